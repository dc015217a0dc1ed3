//! UserManagement's members: invitations, reads, changes.

use uuid::Uuid;

use super::cloud_access::{cloud_access, cloud_access_to_proto, service_roles};
use super::{language, lifetime, page_size, pb, role, timestamp, uuid};
use crate::domain::{
    DeliveryState, DisplayName, Email, InvitationDelivery, Language, Member, MemberChanges,
    MemberStatus,
};
use crate::service::{Error, Invite, ListQuery, Resend, UserUpdate, Violations, check_batch_size};

fn status(raw: i32) -> Result<Option<MemberStatus>, String> {
    match pb::UserStatus::try_from(raw) {
        Ok(pb::UserStatus::Unspecified) => Ok(None),
        Ok(pb::UserStatus::Invited) => Ok(Some(MemberStatus::Invited)),
        Ok(pb::UserStatus::Active) => Ok(Some(MemberStatus::Active)),
        Ok(pb::UserStatus::Expired) => Ok(Some(MemberStatus::Expired)),
        Err(_) => Err(format!("has an unknown value {raw}")),
    }
}

fn delivery_state(raw: i32) -> Result<Option<DeliveryState>, String> {
    match pb::DeliveryState::try_from(raw) {
        Ok(pb::DeliveryState::Unspecified) => Ok(None),
        Ok(pb::DeliveryState::Pending) => Ok(Some(DeliveryState::Pending)),
        Ok(pb::DeliveryState::Sent) => Ok(Some(DeliveryState::Sent)),
        Ok(pb::DeliveryState::Failed) => Ok(Some(DeliveryState::Failed)),
        Err(_) => Err(format!("has an unknown value {raw}")),
    }
}

pub fn invite(request: pb::InviteUserRequest) -> Result<Invite, Error> {
    let pb::InviteUserRequest {
        account_id,
        name,
        email,
        language: raw_language,
        role: raw_role,
        cloud_access: raw_cloud_access,
        request_id,
        invitation_ttl,
        send_email,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let name = v.check("name", DisplayName::parse(&name));
    let email = v.check("email", Email::parse(&email));
    let language = v.check("language", language(raw_language));
    let role = v.check("role", role(raw_role));
    let cloud_access = match raw_cloud_access {
        None => Some(None),
        Some(access) => cloud_access(&mut v, access).map(Some),
    };
    let request_id = v.check(
        "request_id",
        match request_id.map(|id| id.trim().to_string()) {
            None => Ok(None),
            Some(id) if id.is_empty() => Err("must not be empty when given".to_string()),
            Some(id) if id.chars().count() > 128 => {
                Err("must be at most 128 characters".to_string())
            }
            Some(id) if id.chars().any(char::is_control) => {
                Err("must not contain control characters".to_string())
            }
            Some(id) => Ok(Some(id)),
        },
    );
    let (
        Some(account_id),
        Some(name),
        Some(email),
        Some(language),
        Some(role),
        Some(cloud_access),
        Some(request_id),
        Some(ttl),
    ) = (
        account_id,
        name,
        email,
        language,
        role,
        cloud_access,
        request_id,
        v.check("invitation_ttl", lifetime(invitation_ttl)),
    )
    else {
        return Err(v.into_error());
    };
    Ok(Invite {
        account_id,
        name,
        email,
        language,
        role,
        cloud_access,
        request_id,
        ttl,
        send_email: send_email.unwrap_or(true),
    })
}

/// The batch's account and its rows, each parsed as InviteUser would parse it; a row's own
/// `account_id` may be empty (the batch's) or the batch's.
pub fn batch_invite(
    request: pb::BatchInviteUsersRequest,
) -> Result<(Uuid, Vec<Result<Invite, Error>>), Error> {
    let pb::BatchInviteUsersRequest {
        account_id,
        requests,
    } = request;
    let account = uuid(&account_id).map_err(|reason| Error::invalid("account_id", reason))?;
    check_batch_size(requests.len())?;
    let rows = requests
        .into_iter()
        .map(|mut row| {
            if row.account_id.is_empty() {
                row.account_id.clone_from(&account_id);
            } else if uuid(&row.account_id) != Ok(account) {
                return Err(Error::invalid(
                    "account_id",
                    "must be empty or the batch's account_id",
                ));
            }
            invite(row)
        })
        .collect();
    Ok((account, rows))
}

pub fn get(request: pb::GetUserRequest) -> Result<(Uuid, Uuid), Error> {
    let pb::GetUserRequest {
        account_id,
        user_id,
    } = request;
    member_ids(&account_id, &user_id)
}

pub fn resend(request: pb::ResendInvitationRequest) -> Result<Resend, Error> {
    let pb::ResendInvitationRequest {
        account_id,
        user_id,
        invitation_ttl,
        send_email,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let user_id = v.check("user_id", uuid(&user_id));
    let ttl = v.check("invitation_ttl", lifetime(invitation_ttl));
    match (account_id, user_id, ttl) {
        (Some(account_id), Some(user_id), Some(ttl)) => Ok(Resend {
            account_id,
            user_id,
            ttl,
            send_email: send_email.unwrap_or(true),
        }),
        _ => Err(v.into_error()),
    }
}

pub fn accept(request: pb::AcceptInvitationRequest) -> Result<(String, Option<String>), Error> {
    let pb::AcceptInvitationRequest { token, password } = request;
    if token.trim().is_empty() {
        return Err(Error::invalid("token", "is required"));
    }
    if token.len() > 256 {
        return Err(Error::invalid("token", "is not an invitation secret"));
    }
    Ok((token, password))
}

fn member_ids(account_id: &str, user_id: &str) -> Result<(Uuid, Uuid), Error> {
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(account_id));
    let user_id = v.check("user_id", uuid(user_id));
    match (account_id, user_id) {
        (Some(account_id), Some(user_id)) => Ok((account_id, user_id)),
        _ => Err(v.into_error()),
    }
}

pub fn update(request: pb::UpdateUserRequest) -> Result<UserUpdate, Error> {
    let pb::UpdateUserRequest {
        account_id,
        user_id,
        name,
        language: raw_language,
        role: raw_role,
        cloud_access: raw_cloud_access,
        two_factor_enabled,
    } = request;
    let mut v = Violations::default();
    let ids = member_ids(&account_id, &user_id).map_err(|error| match error {
        Error::InvalidArgument(violations) => violations,
        _ => Vec::new(),
    });
    let ids = match ids {
        Ok(ids) => Some(ids),
        Err(violations) => {
            for violation in violations {
                v.add(&violation.field, violation.description);
            }
            None
        }
    };
    let name = match name {
        None => Some(None),
        Some(name) => v.check("name", DisplayName::parse(&name)).map(Some),
    };
    let language = match raw_language {
        None => Some(None),
        Some(raw) => v.check("language", language(raw)).map(Some),
    };
    let role = match raw_role {
        None => Some(None),
        Some(raw) => v.check("role", role(raw)).map(Some),
    };
    let cloud_access = match raw_cloud_access {
        None => Some(None),
        Some(access) => cloud_access(&mut v, access).map(Some),
    };
    let (Some((account_id, user_id)), Some(name), Some(language), Some(role), Some(cloud_access)) =
        (ids, name, language, role, cloud_access)
    else {
        return Err(v.into_error());
    };
    Ok(UserUpdate {
        account_id,
        user_id,
        changes: MemberChanges {
            name,
            language,
            role,
            cloud_access,
            two_factor_enabled,
        },
    })
}

pub fn delete(request: pb::DeleteUserRequest) -> Result<(Uuid, Uuid), Error> {
    let pb::DeleteUserRequest {
        account_id,
        user_id,
    } = request;
    member_ids(&account_id, &user_id)
}

pub fn list(request: pb::ListUsersRequest) -> Result<ListQuery, Error> {
    let pb::ListUsersRequest {
        account_id,
        page_size,
        page_token,
        search,
        status: raw_status,
        two_factor_enabled,
        role: raw_role,
        delivery_state: raw_delivery_state,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let page_size = v.check("page_size", self::page_size(page_size));
    if search.chars().count() > 254 {
        v.add("search", "must be at most 254 characters");
    } else if search.chars().any(char::is_control) {
        v.add("search", "must not contain control characters");
    }
    let status = raw_status.map_or(Ok(None), status);
    let status = v.check("status", status);
    let role = match raw_role {
        None => Some(None),
        Some(raw) => v.check("role", role(raw)).map(Some),
    };
    let delivery_state = raw_delivery_state.map_or(Ok(None), self::delivery_state);
    let delivery_state = v.check("delivery_state", delivery_state);
    let (Some(account_id), Some(page_size), Some(status), Some(role), Some(delivery_state)) =
        (account_id, page_size, status, role, delivery_state)
    else {
        return Err(v.into_error());
    };
    v.into_result()?;
    Ok(ListQuery {
        account_id,
        page_size,
        page_token,
        search,
        status,
        two_factor_enabled,
        role,
        delivery_state,
    })
}

pub fn user(member: Member) -> pb::User {
    let Member {
        user_id,
        account_id,
        email,
        name,
        language,
        role,
        cloud_access,
        status,
        two_factor_enabled,
        created_at,
        invited_at,
        invitation_expires_at,
        accepted_at,
        invitation_delivery,
    } = member;
    pb::User {
        id: user_id.to_string(),
        account_id: account_id.to_string(),
        email,
        name,
        language: match language {
            Language::En => pb::Language::En,
            Language::De => pb::Language::De,
            Language::Zh => pb::Language::Zh,
            Language::Ru => pb::Language::Ru,
        } as i32,
        role: role.id(),
        service_roles: service_roles(role),
        cloud_access: Some(cloud_access_to_proto(cloud_access)),
        status: match status {
            MemberStatus::Invited => pb::UserStatus::Invited,
            MemberStatus::Active => pb::UserStatus::Active,
            MemberStatus::Expired => pb::UserStatus::Expired,
        } as i32,
        two_factor_enabled,
        created_at: Some(timestamp(created_at)),
        invited_at: Some(timestamp(invited_at)),
        invitation_expires_at: invitation_expires_at.map(timestamp),
        accepted_at: accepted_at.map(timestamp),
        invitation_delivery: invitation_delivery.map(delivery),
    }
}

fn delivery(delivery: InvitationDelivery) -> pb::InvitationDelivery {
    let InvitationDelivery {
        state,
        attempts,
        last_error,
        last_attempt_at,
        sent_at,
    } = delivery;
    pb::InvitationDelivery {
        state: match state {
            DeliveryState::Pending => pb::DeliveryState::Pending,
            DeliveryState::Sent => pb::DeliveryState::Sent,
            DeliveryState::Failed => pb::DeliveryState::Failed,
        } as i32,
        attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
        last_error: last_error.unwrap_or_default(),
        last_attempt_time: last_attempt_at.map(timestamp),
        sent_time: sent_at.map(timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn valid_invite() -> pb::InviteUserRequest {
        pb::InviteUserRequest {
            account_id: Uuid::now_v7().to_string(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            language: pb::Language::En as i32,
            role: pb::Role::Engineers as i32,
            cloud_access: None,
            request_id: None,
            invitation_ttl: None,
            send_email: None,
        }
    }

    fn fields(error: Error) -> Vec<String> {
        match error {
            Error::InvalidArgument(violations) => violations.into_iter().map(|v| v.field).collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn every_bad_field_of_an_invitation_is_named() {
        let request = pb::InviteUserRequest {
            account_id: "nope".into(),
            name: " ".into(),
            email: "ada".into(),
            language: 0,
            role: 42,
            cloud_access: Some(pb::CloudAccess { scope: None }),
            request_id: Some(" ".into()),
            invitation_ttl: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 1,
            }),
            send_email: None,
        };
        assert_eq!(
            fields(invite(request).unwrap_err()),
            [
                "account_id",
                "name",
                "email",
                "language",
                "role",
                "cloud_access",
                "request_id",
                "invitation_ttl"
            ]
        );
    }

    #[test]
    fn a_lifetime_is_whole_positive_seconds_and_email_is_sent_by_default() {
        let invite_with = |seconds, nanos| {
            invite(pb::InviteUserRequest {
                invitation_ttl: Some(prost_types::Duration { seconds, nanos }),
                ..valid_invite()
            })
        };
        for (seconds, nanos) in [(0, 0), (-3600, 0), (3600, 500), (i64::MAX, 0)] {
            assert_eq!(
                fields(invite_with(seconds, nanos).unwrap_err()),
                ["invitation_ttl"],
                "{seconds}s {nanos}ns"
            );
        }
        let accepted = invite_with(7200, 0).unwrap();
        assert_eq!(accepted.ttl, Some(chrono::TimeDelta::hours(2)));
        assert!(accepted.send_email);
        let silent = invite(pb::InviteUserRequest {
            send_email: Some(false),
            ..valid_invite()
        })
        .unwrap();
        assert!(!silent.send_email);
        assert_eq!(silent.ttl, None);
        let resend_fields = |request| match resend(request).unwrap_err() {
            Error::InvalidArgument(violations) => {
                violations.into_iter().map(|v| v.field).collect::<Vec<_>>()
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        };
        assert_eq!(
            resend_fields(pb::ResendInvitationRequest {
                account_id: "x".into(),
                user_id: Uuid::now_v7().to_string(),
                invitation_ttl: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0
                }),
                send_email: Some(false),
            }),
            ["account_id", "invitation_ttl"]
        );
    }

    #[test]
    fn project_roles_must_be_project_roles() {
        let mut request = valid_invite();
        request.cloud_access = Some(pb::CloudAccess {
            scope: Some(pb::cloud_access::Scope::Projects(pb::ProjectAccess {
                roles: vec![pb::ProjectRole {
                    project_id: 3,
                    role: pb::CloudRole::ClientAdministrator as i32,
                }],
            })),
        });
        assert_eq!(
            fields(invite(request).unwrap_err()),
            [
                "cloud_access.projects.roles[0].role",
                "cloud_access.projects.roles"
            ]
        );
    }

    #[test]
    fn a_valid_invitation_converts() {
        let invite = invite(valid_invite()).unwrap();
        assert_eq!(invite.role, Role::Engineers);
        assert_eq!(invite.cloud_access, None);
    }

    #[test]
    fn list_page_sizes_default_clamp_and_refuse_negatives() {
        let request = |page_size| pb::ListUsersRequest {
            account_id: Uuid::nil().to_string(),
            page_size,
            ..Default::default()
        };
        assert_eq!(list(request(0)).unwrap().page_size, 50);
        assert_eq!(list(request(5000)).unwrap().page_size, 1000);
        assert_eq!(fields(list(request(-1)).unwrap_err()), ["page_size"]);
    }

    #[test]
    fn an_unknown_delivery_state_is_refused_by_name() {
        let request = |state| pb::ListUsersRequest {
            account_id: Uuid::nil().to_string(),
            delivery_state: Some(state),
            ..Default::default()
        };
        assert_eq!(fields(list(request(42)).unwrap_err()), ["delivery_state"]);
        assert_eq!(list(request(0)).unwrap().delivery_state, None);
        assert_eq!(
            list(request(pb::DeliveryState::Failed as i32))
                .unwrap()
                .delivery_state,
            Some(DeliveryState::Failed)
        );
    }
}
