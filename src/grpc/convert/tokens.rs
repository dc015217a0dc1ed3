//! The ApiTokens service's messages.

use chrono::DateTime;
use uuid::Uuid;

use super::{page_size, pb, role, timestamp, uuid};
use crate::domain::{ApiToken, DisplayName};
use crate::service::{Error, NewApiToken, TokenQuery, Violations};

pub fn create_token(request: pb::CreateApiTokenRequest) -> Result<NewApiToken, Error> {
    let pb::CreateApiTokenRequest {
        account_id,
        name,
        description,
        role: raw_role,
        expires_at,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let name = v.check("name", DisplayName::parse(&name));
    let description = v.check(
        "description",
        if description.trim().chars().count() > 1000 {
            Err("must be at most 1000 characters".to_string())
        } else if description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            Err("must not contain control characters other than newlines and tabs".to_string())
        } else {
            Ok(description.trim().to_string())
        },
    );
    let role = v.check("role", role(raw_role));
    let expires_at = match expires_at {
        None => Some(None),
        Some(time) => v
            .check(
                "expires_at",
                DateTime::from_timestamp(time.seconds, time.nanos.max(0) as u32)
                    .filter(|_| (0..1_000_000_000).contains(&time.nanos))
                    .ok_or_else(|| "is not a valid time".to_string()),
            )
            .map(Some),
    };
    let (Some(account_id), Some(name), Some(description), Some(role), Some(expires_at)) =
        (account_id, name, description, role, expires_at)
    else {
        return Err(v.into_error());
    };
    Ok(NewApiToken {
        account_id,
        name,
        description,
        role,
        expires_at,
    })
}

pub fn list_tokens(request: pb::ListApiTokensRequest) -> Result<TokenQuery, Error> {
    let pb::ListApiTokensRequest {
        account_id,
        page_size: raw_page_size,
        page_token,
        issued_by,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let page_size = v.check("page_size", page_size(raw_page_size));
    let issued_by = match issued_by {
        None => Some(None),
        Some(raw) => v.check("issued_by", uuid(&raw)).map(Some),
    };
    let (Some(account_id), Some(page_size), Some(issued_by)) = (account_id, page_size, issued_by)
    else {
        return Err(v.into_error());
    };
    Ok(TokenQuery {
        account_id,
        page_size,
        page_token,
        issued_by,
    })
}

pub fn delete_token(request: pb::DeleteApiTokenRequest) -> Result<(Uuid, Uuid), Error> {
    let pb::DeleteApiTokenRequest {
        account_id,
        token_id,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let token_id = v.check("token_id", uuid(&token_id));
    match (account_id, token_id) {
        (Some(account_id), Some(token_id)) => Ok((account_id, token_id)),
        _ => Err(v.into_error()),
    }
}

pub fn token(token: ApiToken) -> pb::ApiToken {
    let ApiToken {
        id,
        account_id,
        name,
        description,
        role,
        expires_at,
        created_at,
        last_used_at,
        expired,
        issuer_id,
        issuer_name,
        issuer_email,
        issuer_deleted,
    } = token;
    pb::ApiToken {
        id: id.to_string(),
        account_id: account_id.to_string(),
        name,
        description,
        role: role.id(),
        expires_at: expires_at.map(timestamp),
        created_at: Some(timestamp(created_at)),
        last_used_at: last_used_at.map(timestamp),
        expired,
        issuer: Some(pb::TokenIssuer {
            user_id: issuer_id.to_string(),
            name: issuer_name,
            email: issuer_email,
            deleted: issuer_deleted,
        }),
    }
}
