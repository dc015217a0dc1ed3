//! InviteUser (R1–R6).

use uuid::Uuid;

use super::{Caller, Error, UserService};
use crate::domain::{
    CloudAccess, DisplayName, Email, InvitationSecret, Language, Member, Role, SecretHash,
};
use crate::store::{self, InviteRequestId, Invited, NewInvitation};

/// A validated invitation request.
#[derive(Debug)]
pub struct Invite {
    pub account_id: Uuid,
    pub name: DisplayName,
    pub email: Email,
    pub language: Language,
    pub role: Role,
    /// `None` follows the role.
    pub cloud_access: Option<CloudAccess>,
    /// Makes a retry safe (AIP-155).
    pub request_id: Option<String>,
}

impl Invite {
    /// What the request asked, so a reused `request_id` with another request is caught.
    fn fingerprint(&self, cloud_access: &CloudAccess) -> String {
        let canonical = serde_json::json!([
            self.account_id,
            self.name.as_str(),
            self.email.as_str(),
            self.language.code(),
            self.role.id(),
            cloud_access,
        ]);
        SecretHash::of(&canonical.to_string()).into_string()
    }
}

/// A concurrent invitation can break a unique constraint between our read and our write;
/// running the transaction again sees the other's row and answers from it.
const ATTEMPTS: usize = 3;

impl UserService {
    #[tracing::instrument(skip_all, fields(account_id = %request.account_id), err(level = "info"))]
    pub async fn invite(&self, caller: &Caller, request: Invite) -> Result<Member, Error> {
        let cloud_access = request
            .cloud_access
            .clone()
            .unwrap_or_else(|| CloudAccess::default_for(request.role));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let actor = self.actor(caller);
            let secret = InvitationSecret::generate();
            let new = NewInvitation {
                account_id: request.account_id,
                email: &request.email,
                name: &request.name,
                language: request.language,
                role: request.role,
                cloud_access: &cloud_access,
                secret: &secret,
                expires_at: self.invitation_expiry(actor.now)?,
                request: request
                    .request_id
                    .as_ref()
                    .map(|request_id| InviteRequestId {
                        request_id: request_id.clone(),
                        request_hash: request.fingerprint(&cloud_access),
                    }),
            };
            match self.store.invite(&new, &actor).await {
                Ok(Invited::Created { member, kind }) => {
                    self.outbox_wake.notify_one();
                    self.metrics.invitation_created();
                    tracing::info!(user_id = %member.user_id, kind = kind.as_str(), "user invited");
                    return Ok(member);
                }
                Ok(Invited::Repeated(member)) => {
                    tracing::info!(user_id = %member.user_id, "repeated invitation request answered again");
                    return Ok(member);
                }
                Err(store::Error::Conflict(_)) if attempt < ATTEMPTS => {
                    tracing::debug!("concurrent invitation of the same email; retrying");
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}
