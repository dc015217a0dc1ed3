//! ResendInvitation (R8).

use uuid::Uuid;

use super::{Caller, Error, UserService};
use crate::domain::{InvitationSecret, Member};

impl UserService {
    #[tracing::instrument(skip_all, fields(%account_id, %user_id), err(level = "info"))]
    pub async fn resend(
        &self,
        caller: &Caller,
        account_id: Uuid,
        user_id: Uuid,
    ) -> Result<Member, Error> {
        let actor = self.actor(caller);
        let expires_at = self.invitation_expiry(actor.now)?;
        let secret = InvitationSecret::generate();
        let member = self
            .store
            .resend(account_id, user_id, &secret, expires_at, &actor)
            .await?;
        self.outbox_wake.notify_one();
        self.metrics.invitation_created();
        tracing::info!("invitation resent");
        Ok(member)
    }
}
