//! Who is calling, and what they may do in an account (R16).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Error, JwtVerifier};
use crate::domain::{Acting, Actor, Role, SecretHash, administrators::check_administrator};
use crate::store::Store;

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
        let token = store
            .credential(&SecretHash::of(credential), now)
            .await?
            .ok_or(Error::Unauthenticated(
                "The API token is unknown, expired or deleted",
            ))?;
        if let Err(error) = store.touch_token(&token, now).await {
            // Only bookkeeping: the call goes on.
            tracing::warn!(%error, "cannot record the token's last use");
        }
        Ok(Caller {
            user_id: token.issuer_id,
            request_id: String::new(),
            acting: Acting::ApiToken(token),
        })
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

/// Requires the ADMINISTRATORS role in the account for a read; `what` completes "may …".
/// (A change checks who may make it again, in its own transaction.)
pub(super) async fn administrator_of(
    store: &Store,
    actor: &Actor,
    account_id: Uuid,
    what: &'static str,
) -> Result<(), Error> {
    check_administrator(role_in(store, actor, account_id).await?, what)?;
    Ok(())
}

/// The caller's effective role in the account, read from the database on every call.
/// A caller who is not an active member of the account learns nothing about it: the
/// account answers as if it did not exist.
pub(super) async fn role_in(store: &Store, actor: &Actor, account_id: Uuid) -> Result<Role, Error> {
    Ok(store.acting_role(account_id, actor).await?)
}
