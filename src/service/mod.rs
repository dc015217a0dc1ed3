//! Use cases. Each takes validated domain values, checks who may do it, and makes one
//! storage call; nothing here knows about gRPC or the database's rows.

mod accept;
mod audit;
mod caller;
mod credential_cache;
mod delete;
mod error;
mod invite;
mod jwt;
mod list;
mod operator;
mod page_token;
mod password;
mod resend;
mod tokens;
mod update;
mod watch;

pub use audit::{AuditPage, AuditQuery};
pub use caller::Caller;
pub use credential_cache::UNKNOWN_FOR as UNKNOWN_TOKEN_REMEMBERED_FOR;
pub use error::{Cause, Error, FieldViolation, Violations};
pub use invite::Invite;
pub use jwt::JwtVerifier;
pub use list::{ListPage, ListQuery};
pub use operator::NewAccount;
pub use password::PasswordHasher;
pub use tokens::{IssuedToken, NewApiToken, TokenPage, TokenQuery};
pub use update::UserUpdate;
pub use watch::{WatchQuery, Watched};

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::config::InvitationTtl;
use crate::domain::{Actor, Member, TokenLimits};
use crate::metrics::Metrics;
use crate::store::Store;

/// The users of accounts: invitations, members and their tokens.
#[derive(Clone)]
pub struct UserService {
    store: Store,
    clock: SharedClock,
    invitation_ttl: TimeDelta,
    token_limits: TokenLimits,
    passwords: PasswordHasher,
    /// Wakes the notifier when an email was committed.
    outbox_wake: Arc<Notify>,
    jwt: Option<Arc<JwtVerifier>>,
    /// Malformed and recently unknown credentials, refused before any database work.
    credentials: Arc<credential_cache::CredentialCache>,
    metrics: Metrics,
    /// WatchChanges streams: their heartbeat and their end at shutdown.
    streams: watch::Streams,
}

impl UserService {
    pub fn new(
        store: Store,
        clock: SharedClock,
        invitation_ttl: InvitationTtl,
        token_limits: TokenLimits,
        outbox_wake: Arc<Notify>,
        jwt: Option<JwtVerifier>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            store,
            clock,
            invitation_ttl: invitation_ttl.as_delta(),
            token_limits,
            passwords: PasswordHasher::new(cores),
            outbox_wake,
            jwt: jwt.map(Arc::new),
            credentials: Arc::new(credential_cache::CredentialCache::new()),
            metrics: Metrics::default(),
            streams: watch::Streams::default(),
        }
    }

    /// Counts invitations created and accepted in `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Resolves a credential to a caller.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Error> {
        let now = self.clock.now();
        let presented = self.credentials.screen(authorization, now)?;
        let caller =
            caller::authenticate(&self.store, self.jwt.as_deref(), authorization, now).await;
        if let Err(Error::Unauthenticated(_)) = caller {
            self.credentials.remember_unknown(presented, now);
        }
        caller
    }

    /// When an invitation sent at `now` expires. The lifetime is bounded, so only a clock
    /// at the very end of the calendar fails this.
    pub fn invitation_expiry(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
        now.checked_add_signed(self.invitation_ttl)
            .ok_or(Error::Internal(
                "the invitation's expiry is past the last date",
            ))
    }

    /// The caller acting now, for the audit trail.
    fn actor(&self, caller: &Caller) -> Actor {
        caller.actor(self.clock.now())
    }

    /// One member of the account; every member of the account may look.
    #[tracing::instrument(skip_all, fields(%account_id, %user_id), err(level = "info"))]
    pub async fn get(
        &self,
        caller: &Caller,
        account_id: Uuid,
        user_id: Uuid,
    ) -> Result<Member, Error> {
        caller::role_in(&self.store, &self.actor(caller), account_id).await?;
        Ok(self
            .store
            .member(account_id, user_id, self.clock.now())
            .await?)
    }
}
