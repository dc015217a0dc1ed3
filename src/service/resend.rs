//! ResendInvitation (R8).

use chrono::TimeDelta;
use uuid::Uuid;

use super::{Caller, Error, MemberView, UserService, caller};
use crate::domain::InvitationSecret;
use crate::store::Actor;
use crate::store::invitations::{Resend, ResendError, resend};

/// A member's invitation is resent at most once a minute.
const MIN_INTERVAL: TimeDelta = TimeDelta::minutes(1);

impl UserService {
    #[tracing::instrument(skip_all, fields(%account_id, %user_id), err)]
    pub async fn resend(
        &self,
        caller: &Caller,
        account_id: Uuid,
        user_id: Uuid,
    ) -> Result<MemberView, Error> {
        caller::administrator_of(&self.db, caller, account_id, "resend invitations").await?;
        let now = self.clock.now();
        let secret = InvitationSecret::generate();
        let actor = Actor {
            user_id: caller.user_id,
            request_id: &caller.request_id,
            now,
        };
        let request = Resend {
            account_id,
            user_id,
            secret: &secret,
            expires_at: now + self.invitation_ttl,
            min_interval: MIN_INTERVAL,
        };
        let member = resend(&self.db, &request, &actor)
            .await
            .map_err(|error| match error {
                ResendError::NotFound => Error::UserNotFound {
                    account_id,
                    user_id,
                },
                ResendError::Accepted => Error::InvitationAccepted {
                    account_id,
                    user_id,
                },
                ResendError::TooSoon { retry_after } => Error::ResendTooSoon {
                    user_id,
                    retry_after: retry_after.to_std().unwrap_or_default(),
                },
                ResendError::Db(err) => Error::Storage(err),
            })?;
        self.outbox_wake.notify_one();
        tracing::info!("invitation resent");
        MemberView::from_rows(member, now)
    }
}
