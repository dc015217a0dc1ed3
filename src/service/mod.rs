//! Use cases. Each takes validated domain values, checks who may do it, and makes one
//! storage call; nothing here knows about gRPC.

mod accept;
mod caller;
mod error;
mod invite;
mod list;
mod password;
mod resend;

pub use caller::{Caller, TokenGrant, authenticate};
pub use error::{Error, FieldViolation, Violations};
pub use invite::Invite;
pub use list::{ListPage, ListQuery};
pub use password::PasswordHasher;

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

impl UserService {
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        invitation_ttl: Duration,
        outbox_wake: Arc<Notify>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            db,
            clock,
            invitation_ttl: TimeDelta::from_std(invitation_ttl).unwrap_or(TimeDelta::hours(24)),
            passwords: PasswordHasher::new(cores),
            outbox_wake,
        }
    }

    /// Resolves a credential to a caller.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Error> {
        caller::authenticate(&self.db, authorization, self.clock.now()).await
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
