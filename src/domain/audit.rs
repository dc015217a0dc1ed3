//! The audit trail's vocabulary: who acted, what they did, and what changed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who changes something, in which call, and when: what every audit event records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Uuid,
    /// The call's `x-request-id` (or one assigned), or the command that acted.
    pub request_id: String,
    pub now: DateTime<Utc>,
}

impl Actor {
    pub fn new(user_id: Uuid, request_id: &str, now: DateTime<Utc>) -> Self {
        Self {
            user_id,
            request_id: request_id.to_string(),
            now,
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
    pub action: AuditAction,
    pub target_user_id: Option<Uuid>,
    pub target_token_id: Option<Uuid>,
    pub request_id: String,
    pub changes: Vec<FieldChange>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_stored_names() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(AuditAction::parse("user.exploded"), None);
    }
}
