//! Use cases. Each takes validated domain values, checks who may do it, and makes one
//! storage call; nothing here knows about gRPC.

mod accept;
mod audit;
mod caller;
mod delete;
mod error;
mod invite;
mod jwt;
mod list;
mod password;
mod resend;
mod tokens;
mod update;

pub use audit::{AuditPage, AuditQuery};
pub use caller::{Caller, TokenGrant, authenticate};
pub use error::{Error, FieldViolation, Violations};
pub use invite::Invite;
pub use jwt::JwtVerifier;
pub use list::{ListPage, ListQuery};
pub use password::PasswordHasher;
pub use tokens::{NewApiToken, TokenPage, TokenQuery, TokenView};
pub use update::UserUpdate;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::domain::{CloudAccess, Language, MemberStatus, Role};
use crate::store::{self, entity::membership, entity::user};

/// The users of accounts: invitations and members.
#[derive(Clone)]
pub struct UserService {
    db: DatabaseConnection,
    clock: SharedClock,
    invitation_ttl: TimeDelta,
    passwords: PasswordHasher,
    /// Wakes the notifier when an email was committed.
    outbox_wake: Arc<Notify>,
    jwt: Option<Arc<JwtVerifier>>,
}

/// A member as a caller sees them at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberView {
    pub user_id: Uuid,
    pub account_id: Uuid,
    pub email: String,
    pub name: String,
    pub language: Language,
    pub role: Role,
    pub cloud_access: CloudAccess,
    pub status: MemberStatus,
    pub two_factor_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub invited_at: DateTime<Utc>,
    pub invitation_expires_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
}

impl MemberView {
    fn from_rows(
        (membership, user): (membership::Model, user::Model),
        now: DateTime<Utc>,
    ) -> Result<Self, Error> {
        let corrupt =
            |what: &str| Error::Storage(DbErr::Custom(format!("stored {what} is not valid")));
        let status = MemberStatus::at(&membership.status, membership.invitation_expires_at, now);
        Ok(Self {
            user_id: user.id,
            account_id: membership.account_id,
            email: user.email,
            name: user.name,
            language: Language::from_code(&user.language).ok_or_else(|| corrupt("language"))?,
            role: Role::from_id(membership.role).ok_or_else(|| corrupt("role"))?,
            cloud_access: serde_json::from_str(&membership.cloud_access)
                .map_err(|_| corrupt("cloud access"))?,
            status,
            two_factor_enabled: user.two_factor_enabled,
            created_at: user.created_at,
            invited_at: membership.invited_at,
            invitation_expires_at: match status {
                MemberStatus::Active => None,
                MemberStatus::Invited | MemberStatus::Expired => membership.invitation_expires_at,
            },
            accepted_at: membership.accepted_at,
        })
    }
}

/// A page token tied to the query it came from (a fingerprint of its filters), so it
/// cannot be replayed on another.
pub(crate) mod page_token {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use sha2::{Digest, Sha256};
    use uuid::Uuid;

    use super::Error;

    fn fingerprint(query: &str) -> String {
        hex::encode(&Sha256::digest(query.as_bytes())[..8])
    }

    pub fn encode(last: Uuid, query: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{last}.{}", fingerprint(query)))
    }

    /// Cuts the rows fetched (one more than a page, to learn whether another page follows)
    /// to a page, and makes the token of the next page from its last row's key.
    pub fn paginate<T>(
        mut rows: Vec<T>,
        page_size: u64,
        query: &str,
        key: impl Fn(&T) -> Uuid,
    ) -> (Vec<T>, String) {
        let has_more = rows.len() as u64 > page_size;
        rows.truncate(page_size as usize);
        let next = match rows.last() {
            Some(last) if has_more => encode(key(last), query),
            _ => String::new(),
        };
        (rows, next)
    }

    /// The id the page starts after; `None` for the first page.
    pub fn decode(token: &str, query: &str) -> Result<Option<Uuid>, Error> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::invalid("page_token", "is not a page token of this query");
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        let (last, seen) = raw.split_once('.').ok_or_else(invalid)?;
        if seen != fingerprint(query) {
            return Err(invalid());
        }
        Uuid::try_parse(last).map(Some).map_err(|_| invalid())
    }
}

impl UserService {
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        invitation_ttl: Duration,
        outbox_wake: Arc<Notify>,
        jwt: Option<JwtVerifier>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            db,
            clock,
            invitation_ttl: TimeDelta::from_std(invitation_ttl).unwrap_or(TimeDelta::hours(24)),
            passwords: PasswordHasher::new(cores),
            outbox_wake,
            jwt: jwt.map(Arc::new),
        }
    }

    /// Resolves a credential to a caller.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Error> {
        caller::authenticate(
            &self.db,
            self.jwt.as_deref(),
            authorization,
            self.clock.now(),
        )
        .await
    }

    /// One member of the account; every member of the account may look.
    #[tracing::instrument(skip_all, fields(%account_id, %user_id), err)]
    pub async fn get(
        &self,
        caller: &Caller,
        account_id: Uuid,
        user_id: Uuid,
    ) -> Result<MemberView, Error> {
        caller::role_in(&self.db, caller, account_id).await?;
        let member = store::members::find(&self.db, account_id, user_id)
            .await?
            .ok_or(Error::UserNotFound {
                account_id,
                user_id,
            })?;
        MemberView::from_rows(member, self.clock.now())
    }
}
