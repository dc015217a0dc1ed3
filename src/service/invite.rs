//! InviteUser (R1–R6).

use chrono::TimeDelta;
use secrecy::SecretString;
use uuid::Uuid;

use super::{Error, Presented, UserService};
use crate::domain::{
    CloudAccess, DisplayName, Email, InvitationSecret, Language, Member, Role, SecretHash,
    invitation::accept_link,
};
use crate::store::{self, InviteAttempt, InviteRequestId, Invited, Inviter, NewInvitation};

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
    /// How long the link works; `None`: the default.
    pub ttl: Option<TimeDelta>,
    /// Queue the email; without it the link goes back to the caller.
    pub send_email: bool,
}

/// A pending invitation as its inviter gets it back.
#[derive(Debug)]
pub struct Invitation {
    pub member: Member,
    /// The link with its secret, when the caller delivers it (`send_email` false); given
    /// this once, as the service keeps only the secret's hash.
    pub accept_url: Option<SecretString>,
}

impl Invite {
    /// What the request asked, so a reused `request_id` with another request is caught.
    fn fingerprint(&self, cloud_access: &CloudAccess) -> String {
        let mut canonical = vec![
            serde_json::json!(self.account_id),
            self.name.as_str().into(),
            self.email.as_str().into(),
            self.language.code().into(),
            self.role.id().into(),
            serde_json::json!(cloud_access),
        ];
        // Asked only when not the defaults, so requests recorded before these fields
        // existed still match their retries.
        if self.ttl.is_some() || !self.send_email {
            canonical.push(self.ttl.map(|ttl| ttl.num_seconds()).into());
            canonical.push(self.send_email.into());
        }
        SecretHash::of(&serde_json::Value::Array(canonical).to_string()).into_string()
    }
}

/// A concurrent invitation can break a unique constraint between our read and our write;
/// running the transaction again sees the other's row and answers from it.
const ATTEMPTS: usize = 3;

impl UserService {
    /// Invites as the presented caller. An API token the auth layer only screened is looked
    /// up by the invitation's facts, under the account's lock, when it was seen live lately:
    /// one statement fewer. A token not seen live lately is looked up first, outside the
    /// write transaction, so that made-up tokens never hold one.
    #[tracing::instrument(skip_all, fields(account_id = %request.account_id), err(level = "info"))]
    pub async fn invite(
        &self,
        presented: &Presented,
        request: Invite,
    ) -> Result<Invitation, Error> {
        let resolved;
        let presented = match presented {
            Presented::ApiToken { hash, .. }
                if !self.credentials.seen_live(hash, self.clock.now()) =>
            {
                resolved = Presented::Caller(self.caller(presented).await?);
                &resolved
            }
            _ => presented,
        };
        self.invite_attempts(presented, &request).await
    }

    async fn invite_attempts(
        &self,
        presented: &Presented,
        request: &Invite,
    ) -> Result<Invitation, Error> {
        let cloud_access = request
            .cloud_access
            .clone()
            .unwrap_or_else(|| CloudAccess::default_for(request.role));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = self.clock.now();
            let inviter = match presented {
                Presented::Caller(caller) => Inviter::Actor(caller.actor(now)),
                Presented::ApiToken { hash, request_id } => Inviter::ApiToken {
                    hash,
                    request_id,
                    now,
                },
            };
            let secret = InvitationSecret::generate();
            let new = NewInvitation {
                account_id: request.account_id,
                email: &request.email,
                name: &request.name,
                language: request.language,
                role: request.role,
                cloud_access: &cloud_access,
                secret: &secret,
                expires_at: match self.invitation_expiry(now, request.ttl) {
                    Ok(expires_at) => expires_at,
                    Err(error) => return Err(self.credential_first(presented, error).await),
                },
                request: request
                    .request_id
                    .as_ref()
                    .map(|request_id| InviteRequestId {
                        request_id: request_id.clone(),
                        request_hash: request.fingerprint(&cloud_access),
                    }),
                send_email: request.send_email,
                quota: self.invite_quota,
            };
            let InviteAttempt { outcome, token } = self.store.invite(&new, inviter).await;
            if let Some(token) = &token {
                self.found_live(presented, token, now).await;
            }
            match outcome {
                Ok(Invited::Created { member, kind }) => {
                    if request.send_email {
                        self.outbox_wake.notify_one();
                    }
                    self.metrics.invitation_created();
                    tracing::info!(user_id = %member.user_id, kind = kind.as_str(), send_email = request.send_email, "user invited");
                    return Ok(Invitation {
                        member,
                        accept_url: self.returned_link(request.send_email, &secret),
                    });
                }
                Ok(Invited::Repeated(member)) => {
                    tracing::info!(user_id = %member.user_id, "repeated invitation request answered again");
                    // The first answer's link is not kept: it cannot be given again.
                    return Ok(Invitation {
                        member,
                        accept_url: None,
                    });
                }
                Err(store::Error::Conflict(_)) if attempt < ATTEMPTS => {
                    tracing::debug!("concurrent invitation of the same email; retrying");
                }
                // The token was not found: an unknown one is refused first.
                Err(error) if token.is_none() => {
                    return Err(self.credential_first(presented, error.into()).await);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

impl UserService {
    /// The link for the caller to deliver, unless the service emails it.
    pub(super) fn returned_link(
        &self,
        send_email: bool,
        secret: &InvitationSecret,
    ) -> Option<SecretString> {
        (!send_email).then(|| accept_link(&self.accept_url, secret.expose()).into())
    }
}
