//! InviteUser (R1–R6).

use uuid::Uuid;

use super::{Caller, Error, MemberView, UserService, caller};
use crate::domain::{CloudAccess, DisplayName, Email, InvitationSecret, Language, Role};
use crate::store::Actor;
use crate::store::members::{InviteError, InviteRequestId, NewInvitation, invite};

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
        crate::domain::SecretHash::of(&canonical.to_string()).into_string()
    }
}

/// A concurrent invitation can break a unique constraint between our read and our write;
/// running the transaction again sees the other's row and answers from it.
const ATTEMPTS: usize = 3;

impl UserService {
    #[tracing::instrument(skip_all, fields(account_id = %request.account_id), err)]
    pub async fn invite(&self, caller: &Caller, request: Invite) -> Result<MemberView, Error> {
        caller::administrator_of(&self.db, caller, request.account_id, "invite users").await?;
        let cloud_access = request
            .cloud_access
            .clone()
            .unwrap_or_else(|| CloudAccess::default_for(request.role));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = self.clock.now();
            let secret = InvitationSecret::generate();
            let actor = Actor {
                user_id: caller.user_id,
                request_id: &caller.request_id,
                now,
            };
            let new = NewInvitation {
                account_id: request.account_id,
                actor: &actor,
                email: &request.email,
                name: &request.name,
                language: request.language,
                role: request.role,
                cloud_access: &cloud_access,
                secret: &secret,
                expires_at: now + self.invitation_ttl,
                request: request
                    .request_id
                    .as_ref()
                    .map(|request_id| InviteRequestId {
                        request_id: request_id.clone(),
                        request_hash: request.fingerprint(&cloud_access),
                    }),
            };
            match invite(&self.db, &new).await {
                Ok((member, kind)) => {
                    self.outbox_wake.notify_one();
                    tracing::info!(
                        user_id = %member.1.id,
                        kind = kind.as_str(),
                        "user invited"
                    );
                    return MemberView::from_rows(member, now);
                }
                Err(InviteError::Repeated {
                    account_id,
                    user_id,
                }) => {
                    tracing::info!(%user_id, "repeated invitation request answered again");
                    let member = crate::store::members::find(&self.db, account_id, user_id)
                        .await?
                        .ok_or(Error::UserNotFound {
                            account_id,
                            user_id,
                        })?;
                    return MemberView::from_rows(member, self.clock.now());
                }
                Err(InviteError::RequestIdReused) => {
                    return Err(Error::invalid(
                        "request_id",
                        "was already used for a different invitation",
                    ));
                }
                Err(InviteError::AlreadyMember { user_id }) => {
                    return Err(Error::AlreadyInvited {
                        account_id: request.account_id,
                        user_id,
                    });
                }
                Err(InviteError::Db(err))
                    if attempt < ATTEMPTS && crate::store::is_unique_violation(&err) =>
                {
                    tracing::debug!("concurrent invitation of the same email; retrying");
                }
                Err(InviteError::Db(err)) => return Err(Error::Storage(err)),
            }
        }
    }
}
