//! Who is calling, and what they may do in an account (R16).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Error, JwtVerifier, credential_cache::UNKNOWN_TOKEN};
use crate::domain::{Acting, Actor, Credential, Role, SecretHash, token::effective_role};
use crate::store::{ReadFacts, Reader, Store};

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    /// The call's `x-request-id` (or one assigned), recorded in the audit trail.
    pub request_id: String,
    /// The credential presented: an API token works only in its account, with its role as
    /// a ceiling.
    pub acting: Acting,
}

impl Caller {
    /// The caller as the actor of a change made at `now`.
    pub fn actor(&self, now: DateTime<Utc>) -> Actor {
        Actor::new(self.user_id, self.acting.clone(), &self.request_id, now)
    }
}

/// A call's credential as the auth layer hands it on to a read: a caller already resolved,
/// or an API token left for the read's own statement to look up, beside the caller's role
/// and what the read asks for (one round trip instead of two or three).
#[derive(Clone, Debug)]
pub enum Presented {
    Caller(Caller),
    ApiToken {
        hash: SecretHash,
        /// The call's `x-request-id` (or one assigned).
        request_id: String,
    },
}

impl Presented {
    pub fn set_request_id(&mut self, id: &str) {
        match self {
            Presented::Caller(caller) => caller.request_id = id.to_string(),
            Presented::ApiToken { request_id, .. } => *request_id = id.to_string(),
        }
    }

    /// Who the read's statement is for.
    pub(super) fn reader(&self) -> Reader<'_> {
        match self {
            Presented::Caller(caller) => Reader::User(caller.user_id),
            Presented::ApiToken { hash, .. } => Reader::ApiToken(hash),
        }
    }
}

/// A read's caller, their effective role in the account, and what the read found.
pub(super) struct Reading<T> {
    pub caller: Caller,
    pub role: Role,
    pub found: Option<T>,
}

/// Decides from the facts of a read's statement who calls and with which role, by the
/// rules of [`authenticate`] and [`role_in`]: an API token must be live, works only in its
/// account and caps its user's role; a caller who is not an active member of the account
/// learns nothing about it.
pub(super) fn settle<T>(
    presented: &Presented,
    account_id: Uuid,
    facts: ReadFacts<T>,
) -> Result<Reading<T>, Error> {
    let caller = match presented {
        Presented::Caller(caller) => caller.clone(),
        Presented::ApiToken { request_id, .. } => {
            let token = facts.token.ok_or(Error::Unauthenticated(UNKNOWN_TOKEN))?;
            token_caller(token, request_id)
        }
    };
    if !caller.acting.works_in(account_id) {
        return Err(Error::AccountNotFound(account_id));
    }
    let member_role = facts
        .member_role
        .ok_or(Error::AccountNotFound(account_id))?;
    let role = effective_role(member_role, caller.acting.role_ceiling());
    Ok(Reading {
        caller,
        role,
        found: facts.found,
    })
}

fn token_caller(token: Credential, request_id: &str) -> Caller {
    Caller {
        user_id: token.issuer_id,
        request_id: request_id.to_string(),
        acting: Acting::ApiToken(token),
    }
}

/// The live token with this secret's hash, as a caller; its use is recorded.
pub(super) async fn by_token(
    store: &Store,
    hash: &SecretHash,
    now: DateTime<Utc>,
) -> Result<Caller, Error> {
    let token = store
        .credential(hash, now)
        .await?
        .ok_or(Error::Unauthenticated(UNKNOWN_TOKEN))?;
    touch(store, &token, now).await;
    Ok(token_caller(token, ""))
}

/// Records the token's use (at most once a minute: most calls write nothing).
pub(super) async fn touch(store: &Store, token: &Credential, now: DateTime<Utc>) {
    if let Err(error) = store.touch_token(token, now).await {
        // Only bookkeeping: the call goes on.
        tracing::warn!(%error, "cannot record the token's last use");
    }
}

const MALFORMED: &str = "The authorization metadata must be `APIKey <token>` or `Bearer <jwt>`";

/// Resolves the `authorization` metadata to a caller.
pub(super) async fn authenticate(
    store: &Store,
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
        by_token(store, &SecretHash::of(credential), now).await
    } else if scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty() {
        let verifier = jwt.ok_or(Error::Unauthenticated(
            "Bearer credentials are not accepted: no JWT key is configured",
        ))?;
        let verified = verifier.verify(credential, now).await?;
        Ok(Caller {
            user_id: verified.user_id,
            request_id: String::new(),
            acting: Acting::Jwt { jti: verified.jti },
        })
    } else {
        Err(Error::Unauthenticated(MALFORMED))
    }
}
