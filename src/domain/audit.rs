//! The audit trail's vocabulary: who acted, what they did, and what changed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Credential, Role};

/// Who changes something, with which credential, in which call, and when: what every
/// change is checked against and every audit event records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Uuid,
    pub acting: Acting,
    /// The call's `x-request-id` (or one assigned), or the command that acted.
    pub request_id: String,
    pub now: DateTime<Utc>,
}

impl Actor {
    pub fn new(user_id: Uuid, acting: Acting, request_id: &str, now: DateTime<Utc>) -> Self {
        Self {
            user_id,
            acting,
            request_id: request_id.to_string(),
            now,
        }
    }
}

/// The credential an actor acts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acting {
    /// An API token: it works in its own account only, and its role and expiry bound what
    /// it may do and mint.
    ApiToken(Credential),
    /// A JWT of an identity provider or of a key the service trusts; `jti` when it has one.
    Jwt { jti: Option<String> },
    /// An operator's command on the service's own database.
    Operator,
    /// The invitation's secret, when its invitee accepts.
    Invitation,
}

impl Acting {
    /// Whether the credential may act in the account at all.
    pub fn works_in(&self, account_id: Uuid) -> bool {
        match self {
            Acting::ApiToken(credential) => credential.account_id == account_id,
            Acting::Jwt { .. } | Acting::Operator | Acting::Invitation => true,
        }
    }

    /// The role the credential caps its user's role at, if it does.
    pub fn role_ceiling(&self) -> Option<Role> {
        match self {
            Acting::ApiToken(credential) => Some(credential.role),
            Acting::Jwt { .. } | Acting::Operator | Acting::Invitation => None,
        }
    }

    /// How the credential is recorded in the audit trail: `api_token:<id>`, `jwt:<jti>` (or
    /// `jwt` without one), `operator`, `invitation`.
    pub fn audit_name(&self) -> String {
        match self {
            Acting::ApiToken(credential) => format!("api_token:{}", credential.token_id),
            Acting::Jwt { jti: Some(jti) } => format!("jwt:{jti}"),
            Acting::Jwt { jti: None } => "jwt".into(),
            Acting::Operator => "operator".into(),
            Acting::Invitation => "invitation".into(),
        }
    }
}

/// What an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    UserInvited,
    InvitationResent,
    InvitationAccepted,
    UserUpdated,
    UserDeleted,
    ApiTokenCreated,
    ApiTokenDeleted,
}

impl AuditAction {
    pub const ALL: [AuditAction; 7] = [
        AuditAction::UserInvited,
        AuditAction::InvitationResent,
        AuditAction::InvitationAccepted,
        AuditAction::UserUpdated,
        AuditAction::UserDeleted,
        AuditAction::ApiTokenCreated,
        AuditAction::ApiTokenDeleted,
    ];

    /// The action's stable name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::UserInvited => "user.invited",
            AuditAction::InvitationResent => "invitation.resent",
            AuditAction::InvitationAccepted => "invitation.accepted",
            AuditAction::UserUpdated => "user.updated",
            AuditAction::UserDeleted => "user.deleted",
            AuditAction::ApiTokenCreated => "api_token.created",
            AuditAction::ApiTokenDeleted => "api_token.deleted",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str() == stored)
    }
}

/// One changed field, before and after, as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: String,
    pub after: String,
}

/// One recorded event, as its readers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: Uuid,
    pub account_id: Uuid,
    pub actor_id: Option<Uuid>,
    /// The credential the actor acted with (see [`Acting::audit_name`]); empty for events
    /// recorded before credentials were.
    pub actor_credential: String,
    pub action: AuditAction,
    pub target_user_id: Option<Uuid>,
    pub target_token_id: Option<Uuid>,
    pub request_id: String,
    pub changes: Vec<FieldChange>,
    pub created_at: DateTime<Utc>,
    /// For an invitation or a resend: how its link went to the invitee.
    pub link_delivery: Option<LinkDelivery>,
}

/// How an invitation's link reaches the invitee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkDelivery {
    /// Emailed by the service's notifier.
    Email,
    /// Returned in the answer, once, for the caller to deliver.
    ReturnedToCaller,
}

impl LinkDelivery {
    pub const ALL: [LinkDelivery; 2] = [LinkDelivery::Email, LinkDelivery::ReturnedToCaller];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkDelivery::Email => "email",
            LinkDelivery::ReturnedToCaller => "caller",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|delivery| delivery.as_str() == stored)
    }

    /// Emailed when `send_email`, else returned to the caller.
    pub fn when_sending(send_email: bool) -> Self {
        if send_email {
            LinkDelivery::Email
        } else {
            LinkDelivery::ReturnedToCaller
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_acts_only_in_its_account_and_caps_the_role() {
        let account = Uuid::now_v7();
        let token = Acting::ApiToken(Credential {
            token_id: Uuid::nil(),
            account_id: account,
            issuer_id: Uuid::now_v7(),
            role: Role::Engineers,
            expires_at: None,
            last_used_at: None,
        });
        let table = [
            (
                token.clone(),
                true,
                false,
                Some(Role::Engineers),
                "api_token:00000000-0000-0000-0000-000000000000",
            ),
            (
                Acting::Jwt {
                    jti: Some("j1".into()),
                },
                true,
                true,
                None,
                "jwt:j1",
            ),
            (Acting::Jwt { jti: None }, true, true, None, "jwt"),
            (Acting::Operator, true, true, None, "operator"),
            (Acting::Invitation, true, true, None, "invitation"),
        ];
        for (acting, here, elsewhere, ceiling, name) in table {
            assert_eq!(acting.works_in(account), here, "{acting:?}");
            assert_eq!(acting.works_in(Uuid::now_v7()), elsewhere, "{acting:?}");
            assert_eq!(acting.role_ceiling(), ceiling, "{acting:?}");
            assert_eq!(acting.audit_name(), name);
        }
    }

    #[test]
    fn actions_round_trip_through_their_stored_names() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(AuditAction::parse("user.exploded"), None);
        for delivery in LinkDelivery::ALL {
            assert_eq!(LinkDelivery::parse(delivery.as_str()), Some(delivery));
        }
        assert_eq!(LinkDelivery::parse("pigeon"), None);
    }
}
