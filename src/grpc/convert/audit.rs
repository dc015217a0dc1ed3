//! The audit trail's messages.

use super::{optional_id, page_size, pb, timestamp, uuid};
use crate::domain::{
    AuditAction as Action, AuditEvent, FieldChange, Language, LinkDelivery, MemberField,
};
use crate::service::{AuditQuery, Error, Violations, WatchQuery, Watched};

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

/// A recorded value as the API spells it: enum-valued fields by their proto value name
/// (`role` is stored as the role id, `language` as its ISO 639-1 code). Converting here, on
/// read, names the values of events recorded before as well. A value that is not a known
/// one is shown as stored.
fn field_value(field: &str, stored: String) -> String {
    let name = match field {
        f if f == MemberField::Role.as_str() => stored
            .parse::<i32>()
            .ok()
            .and_then(|id| pb::Role::try_from(id).ok())
            .filter(|role| *role != pb::Role::Unspecified)
            .map(|role| role.as_str_name()),
        f if f == MemberField::Language.as_str() => Language::from_code(&stored).map(|language| {
            match language {
                Language::En => pb::Language::En,
                Language::De => pb::Language::De,
                Language::Zh => pb::Language::Zh,
                Language::Ru => pb::Language::Ru,
            }
            .as_str_name()
        }),
        _ => None,
    };
    name.map_or(stored, str::to_owned)
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

pub fn watch(request: pb::WatchChangesRequest) -> Result<WatchQuery, Error> {
    let pb::WatchChangesRequest {
        account_id,
        start_after,
    } = request;
    let account_id =
        uuid(&account_id).map_err(|description| Error::invalid("account_id", description))?;
    Ok(WatchQuery {
        account_id,
        start_after,
    })
}

pub fn watched(watched: Watched) -> pb::ChangeEvent {
    pb::ChangeEvent {
        cursor: watched.cursor,
        event: watched.event.map(audit_event),
    }
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
        link_delivery,
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
                    before: field_value(&field, before),
                    after: field_value(&field, after),
                    field,
                },
            )
            .collect(),
        create_time: Some(timestamp(created_at)),
        link_delivery: link_delivery.map_or(
            pb::LinkDelivery::Unspecified,
            |delivery| match delivery {
                LinkDelivery::Email => pb::LinkDelivery::Email,
                LinkDelivery::ReturnedToCaller => pb::LinkDelivery::ReturnedToCaller,
            },
        ) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::field_value;

    #[test]
    fn enum_valued_fields_are_shown_by_their_proto_names() {
        let cases = [
            ("role", "1", "ROLE_ADMINISTRATORS"),
            ("role", "2", "ROLE_USERS"),
            ("role", "5", "ROLE_ENGINEERS"),
            ("role", "3009", "ROLE_PURGE_AND_PREFETCH_API_WEB"),
            ("role", "3022", "ROLE_PURGE_AND_PREFETCH_API"),
            ("role", "7", "7"),
            ("role", "0", "0"),
            ("language", "de", "LANGUAGE_DE"),
            ("language", "en", "LANGUAGE_EN"),
            ("language", "xx", "xx"),
            ("name", "5", "5"),
            ("two_factor_enabled", "true", "true"),
        ];
        for (field, stored, shown) in cases {
            assert_eq!(field_value(field, stored.into()), shown, "{field}={stored}");
        }
    }
}
