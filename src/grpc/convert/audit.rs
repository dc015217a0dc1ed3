//! The audit trail's messages.

use super::{optional_id, page_size, pb, timestamp, uuid};
use crate::domain::{AuditAction as Action, AuditEvent, FieldChange};
use crate::service::{AuditQuery, Error, Violations};

fn action_to_proto(action: Action) -> pb::AuditAction {
    match action {
        Action::UserInvited => pb::AuditAction::UserInvited,
        Action::InvitationResent => pb::AuditAction::InvitationResent,
        Action::InvitationAccepted => pb::AuditAction::InvitationAccepted,
        Action::UserUpdated => pb::AuditAction::UserUpdated,
        Action::UserDeleted => pb::AuditAction::UserDeleted,
        Action::ApiTokenCreated => pb::AuditAction::ApiTokenCreated,
        Action::ApiTokenDeleted => pb::AuditAction::ApiTokenDeleted,
    }
}

pub fn list_audit(request: pb::ListAuditEventsRequest) -> Result<AuditQuery, Error> {
    let pb::ListAuditEventsRequest {
        account_id,
        page_size: raw_page_size,
        page_token,
        target_user_id,
        action: raw_action,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let page_size = v.check("page_size", page_size(raw_page_size));
    let target_user_id = match target_user_id {
        None => Some(None),
        Some(raw) => v.check("target_user_id", uuid(&raw)).map(Some),
    };
    let action = match raw_action.map(pb::AuditAction::try_from) {
        None | Some(Ok(pb::AuditAction::Unspecified)) => Some(None),
        Some(Ok(wanted)) => Some(
            Action::ALL
                .into_iter()
                .find(|action| action_to_proto(*action) == wanted),
        ),
        Some(Err(_)) => {
            v.add("action", "has an unknown value");
            None
        }
    };
    let (Some(account_id), Some(page_size), Some(target_user_id), Some(action)) =
        (account_id, page_size, target_user_id, action)
    else {
        return Err(v.into_error());
    };
    Ok(AuditQuery {
        account_id,
        page_size,
        page_token,
        target_user_id,
        action,
    })
}

pub fn audit_event(event: AuditEvent) -> pb::AuditEvent {
    let AuditEvent {
        id,
        account_id,
        actor_id,
        actor_credential,
        action,
        target_user_id,
        target_token_id,
        request_id,
        changes,
        created_at,
    } = event;
    pb::AuditEvent {
        id: id.to_string(),
        account_id: account_id.to_string(),
        actor_user_id: optional_id(actor_id),
        actor_credential,
        action: action_to_proto(action) as i32,
        target_user_id: optional_id(target_user_id),
        target_token_id: optional_id(target_token_id),
        request_id,
        changes: changes
            .into_iter()
            .map(
                |FieldChange {
                     field,
                     before,
                     after,
                 }| pb::FieldChange {
                    field,
                    before,
                    after,
                },
            )
            .collect(),
        create_time: Some(timestamp(created_at)),
    }
}
