//! Who is calling, and what they may do in an account (R16).

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::{Error, JwtVerifier};
use crate::domain::{Role, SecretHash};
use crate::store;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    /// The call's `x-request-id` (or one assigned), recorded in the audit trail.
    pub request_id: String,
    /// Set when the caller presented an API token: it works only in its account, with its
    /// role as a ceiling.
    pub token: Option<TokenGrant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    pub token_id: Uuid,
    pub account_id: Uuid,
    pub role: Role,
}

const MALFORMED: &str = "The authorization metadata must be `APIKey <token>` or `Bearer <jwt>`";

/// Resolves the `authorization` metadata to a caller.
pub async fn authenticate(
    db: &DatabaseConnection,
    jwt: Option<&JwtVerifier>,
    authorization: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Caller, Error> {
    let Some(value) = authorization else {
        return Err(Error::Unauthenticated(
            "A credential is required in the authorization metadata",
        ));
    };
    let (scheme, credential) = value
        .trim()
        .split_once(' ')
        .ok_or(Error::Unauthenticated(MALFORMED))?;
    let credential = credential.trim();
    if scheme.eq_ignore_ascii_case("apikey") && !credential.is_empty() {
        let token = store::tokens::find_live_by_hash(db, &SecretHash::of(credential), now)
            .await?
            .ok_or(Error::Unauthenticated(
                "The API token is unknown, expired or deleted",
            ))?;
        let role = Role::from_id(token.role).ok_or(Error::Unauthenticated(
            "The API token is unknown, expired or deleted",
        ))?;
        if let Err(error) = store::tokens::touch(db, &token, now).await {
            // Only bookkeeping: the call goes on.
            tracing::warn!(%error, "cannot record the token's last use");
        }
        Ok(Caller {
            user_id: token.issuer_id,
            request_id: String::new(),
            token: Some(TokenGrant {
                token_id: token.id,
                account_id: token.account_id,
                role,
            }),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty() {
        let verifier = jwt.ok_or(Error::Unauthenticated(
            "Bearer credentials are not accepted: no JWT key is configured",
        ))?;
        let user_id = verifier.verify(credential, now)?;
        Ok(Caller {
            user_id,
            request_id: String::new(),
            token: None,
        })
    } else {
        Err(Error::Unauthenticated(MALFORMED))
    }
}

/// Requires the ADMINISTRATORS role in the account.
pub async fn administrator_of(
    db: &DatabaseConnection,
    caller: &Caller,
    account_id: Uuid,
    what: &str,
) -> Result<(), Error> {
    if role_in(db, caller, account_id).await?.is_administrator() {
        Ok(())
    } else {
        Err(Error::PermissionDenied {
            reason: "ADMINISTRATOR_REQUIRED",
            message: format!("Only administrators of the account may {what}"),
        })
    }
}

/// The caller's effective role in the account, read from the database on every call.
/// A caller who is not an active member of the account learns nothing about it: the
/// account answers as if it did not exist.
pub async fn role_in(
    db: &DatabaseConnection,
    caller: &Caller,
    account_id: Uuid,
) -> Result<Role, Error> {
    let not_found = Error::AccountNotFound(account_id);
    if let Some(grant) = caller.token
        && grant.account_id != account_id
    {
        return Err(not_found);
    }
    let membership = store::members::find_active_membership(db, account_id, caller.user_id)
        .await?
        .ok_or(not_found)?;
    let member_role = Role::from_id(membership.role).ok_or(Error::AccountNotFound(account_id))?;
    Ok(match caller.token {
        Some(grant) => member_role.min(grant.role),
        None => member_role,
    })
}
