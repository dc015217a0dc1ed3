//! Use cases. Each takes validated domain values, checks who may do it, and makes one
//! storage call; nothing here knows about gRPC or the database's rows.

mod accept;
mod audit;
mod batch;
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
pub use batch::{MAX_BATCH_ROWS, check_batch_size};
pub use caller::{Caller, Presented};
pub use credential_cache::UNKNOWN_FOR as UNKNOWN_TOKEN_REMEMBERED_FOR;
pub use error::{Cause, Error, FieldViolation, Violations};
pub use invite::{Invitation, Invite};
pub use jwt::JwtVerifier;
pub use list::{ListPage, ListQuery};
pub use operator::NewAccount;
pub use password::PasswordHasher;
pub use resend::Resend;
pub use tokens::{IssuedToken, NewApiToken, TokenPage, TokenQuery};
pub use update::UserUpdate;
pub use watch::{WatchQuery, Watched};

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::domain::{
    Actor, Credential, Member, Role, TokenLimits,
    invitation::{InviteQuota, Lifetimes},
};
use crate::metrics::Metrics;
use crate::store::{ReadFacts, Store};

/// The users of accounts: invitations, members and their tokens.
#[derive(Clone)]
pub struct UserService {
    store: Store,
    clock: SharedClock,
    lifetimes: Lifetimes,
    /// Invitations and resends per account and window, if limited.
    invite_quota: Option<InviteQuota>,
    /// The page invitation links lead to, for links returned to the caller.
    accept_url: Arc<str>,
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
        lifetimes: Lifetimes,
        accept_url: &str,
        token_limits: TokenLimits,
        outbox_wake: Arc<Notify>,
        jwt: Option<JwtVerifier>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            store,
            clock,
            lifetimes,
            invite_quota: None,
            accept_url: accept_url.into(),
            token_limits,
            passwords: PasswordHasher::new(cores),
            outbox_wake,
            jwt: jwt.map(Arc::new),
            credentials: Arc::new(credential_cache::CredentialCache::new()),
            metrics: Metrics::default(),
            streams: watch::Streams::default(),
        }
    }

    /// Limits each account's invitations and resends per window.
    pub fn with_invite_quota(self, invite_quota: Option<InviteQuota>) -> Self {
        Self {
            invite_quota,
            ..self
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
        match (&caller, presented) {
            (Ok(_), credential_cache::Screened::ApiKey(hash)) => {
                self.credentials.remember_live(&hash, now);
            }
            (Err(Error::Unauthenticated(_)), presented) => {
                self.credentials.remember_unknown(presented, now);
            }
            _ => {}
        }
        caller
    }

    /// Screens the `authorization` metadata for a call that looks its API token up itself:
    /// an API token that passed the screen is left for the call's statement; any other
    /// credential is resolved now.
    pub async fn present(&self, authorization: Option<&str>) -> Result<Presented, Error> {
        let now = self.clock.now();
        if let credential_cache::Screened::ApiKey(hash) =
            self.credentials.screen(authorization, now)?
        {
            return Ok(Presented::ApiToken {
                hash,
                request_id: String::new(),
            });
        }
        Ok(Presented::Caller(self.authenticate(authorization).await?))
    }

    /// The caller a credential presents, for a call that refuses before it reads: an
    /// unknown credential is refused first, as if the auth layer had looked it up.
    pub async fn caller(&self, presented: &Presented) -> Result<Caller, Error> {
        match presented {
            Presented::Caller(caller) => Ok(caller.clone()),
            Presented::ApiToken { hash, request_id } => {
                let now = self.clock.now();
                let mut caller = caller::by_token(&self.store, hash, now).await;
                match &mut caller {
                    Ok(caller) => {
                        caller.request_id.clone_from(request_id);
                        self.credentials.remember_live(hash, now);
                    }
                    Err(Error::Unauthenticated(_)) => self.remember_unknown(hash, now),
                    Err(_) => {}
                }
                caller
            }
        }
    }

    /// The answer to a call refused before its statement found the API token it presented
    /// (a request found invalid, an account not found): an unknown token is refused first,
    /// as if the auth layer had looked it up. A token its statement found unknown is
    /// remembered.
    pub async fn credential_first(&self, presented: &Presented, error: Error) -> Error {
        let Presented::ApiToken { hash, .. } = presented else {
            return error;
        };
        match error {
            Error::Unauthenticated(_) => {
                self.remember_unknown(hash, self.clock.now());
                error
            }
            Error::InvalidArgument(_) | Error::AccountNotFound(_) => {
                match self.caller(presented).await {
                    Ok(_) => error,
                    Err(refusal) => refusal,
                }
            }
            _ => error,
        }
    }

    /// Records the use of the token a call's statement found by its hash, and remembers it
    /// live.
    pub(super) async fn found_live(
        &self,
        presented: &Presented,
        token: &Credential,
        now: DateTime<Utc>,
    ) {
        caller::touch(&self.store, token, now).await;
        if let Presented::ApiToken { hash, .. } = presented {
            self.credentials.remember_live(hash, now);
        }
    }

    fn remember_unknown(&self, hash: &crate::domain::SecretHash, now: DateTime<Utc>) {
        self.credentials
            .remember_unknown(credential_cache::Screened::ApiKey(hash.clone()), now);
    }

    /// Settles a read's caller and role from the facts its statement read; records the use
    /// of a token that statement found, and remembers one it did not.
    async fn settle<T>(
        &self,
        presented: &Presented,
        account_id: Uuid,
        facts: ReadFacts<T>,
        now: DateTime<Utc>,
    ) -> Result<caller::Reading<T>, Error> {
        if let Some(token) = &facts.token {
            self.found_live(presented, token, now).await;
        }
        let reading = caller::settle(presented, account_id, facts);
        if let (Err(Error::Unauthenticated(_)), Presented::ApiToken { hash, .. }) =
            (&reading, presented)
        {
            self.remember_unknown(hash, now);
        }
        reading
    }

    /// The caller and their effective role in the account, read in one statement.
    pub(super) async fn reader_in(
        &self,
        presented: &Presented,
        account_id: Uuid,
    ) -> Result<(Caller, Role), Error> {
        let now = self.clock.now();
        let facts = self
            .store
            .caller_facts(presented.reader(), account_id, now)
            .await?;
        let reading = self.settle(presented, account_id, facts, now).await?;
        Ok((reading.caller, reading.role))
    }

    /// When an invitation sent at `now` expires: after the lifetime the caller asked for,
    /// if it is in range, or the default. The lifetime is bounded, so only a clock at the
    /// very end of the calendar fails this.
    pub fn invitation_expiry(
        &self,
        now: DateTime<Utc>,
        requested: Option<TimeDelta>,
    ) -> Result<DateTime<Utc>, Error> {
        let lifetime = self
            .lifetimes
            .choose(requested)
            .map_err(|reason| Error::invalid("invitation_ttl", reason))?;
        now.checked_add_signed(lifetime).ok_or(Error::Internal(
            "the invitation's expiry is past the last date",
        ))
    }

    /// The caller acting now, for the audit trail.
    fn actor(&self, caller: &Caller) -> Actor {
        caller.actor(self.clock.now())
    }

    /// One member of the account; every member of the account may look. The caller's
    /// credential, their role and the member are read in one statement.
    #[tracing::instrument(skip_all, fields(%account_id, %user_id), err(level = "info"))]
    pub async fn get(
        &self,
        presented: &Presented,
        account_id: Uuid,
        user_id: Uuid,
    ) -> Result<Member, Error> {
        let now = self.clock.now();
        let facts = self
            .store
            .member_for(presented.reader(), account_id, user_id, now)
            .await?;
        self.settle(presented, account_id, facts, now)
            .await?
            .found
            .ok_or(Error::UserNotFound {
                account_id,
                user_id,
            })
    }
}
