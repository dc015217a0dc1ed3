//! ResendInvitation (R8).

use chrono::TimeDelta;
use uuid::Uuid;

use super::{Caller, Error, Invitation, UserService};
use crate::domain::InvitationSecret;
use crate::store::Renewal;

/// A validated ResendInvitation request.
#[derive(Debug)]
pub struct Resend {
    pub account_id: Uuid,
    pub user_id: Uuid,
    /// How long the new link works; `None`: the default.
    pub ttl: Option<TimeDelta>,
    /// Queue the email; without it the link goes back to the caller.
    pub send_email: bool,
}

impl UserService {
    #[tracing::instrument(skip_all, fields(account_id = %request.account_id, user_id = %request.user_id), err(level = "info"))]
    pub async fn resend(&self, caller: &Caller, request: Resend) -> Result<Invitation, Error> {
        let actor = self.actor(caller);
        let expires_at = self.invitation_expiry(actor.now, request.ttl)?;
        let secret = InvitationSecret::generate();
        let member = self
            .store
            .resend(
                request.account_id,
                request.user_id,
                &Renewal {
                    secret: &secret,
                    expires_at,
                    send_email: request.send_email,
                    quota: self.invite_quota,
                },
                &actor,
            )
            .await?;
        if request.send_email {
            self.outbox_wake.notify_one();
        }
        self.metrics.invitation_created();
        tracing::info!(send_email = request.send_email, "invitation resent");
        Ok(Invitation {
            member,
            accept_url: self.returned_link(request.send_email, &secret),
        })
    }
}
