//! Proto ↔ domain. Requests are destructured field by field, so a new proto field does not
//! compile until this file decides what it means.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::pb;
use crate::domain::{
    CloudAccess, DisplayName, Email, Language, MemberStatus, ProjectCloudRole, ProjectRole, Role,
};
use crate::service::{
    AuditQuery, Error, Invite, ListQuery, MemberView, NewApiToken, TokenQuery, TokenView,
    UserUpdate, Violations,
};
use crate::store::audit::{Action, Change};

pub fn uuid(raw: &str) -> Result<Uuid, String> {
    if raw.trim().is_empty() {
        return Err("is required".into());
    }
    Uuid::try_parse(raw.trim()).map_err(|_| format!("{raw:?} is not a UUID"))
}

fn required_enum<P, T>(raw: i32, unspecified: P, convert: impl Fn(P) -> T) -> Result<T, String>
where
    P: TryFrom<i32> + PartialEq,
{
    match P::try_from(raw) {
        Ok(value) if value == unspecified => Err("is required".into()),
        Ok(value) => Ok(convert(value)),
        Err(_) => Err(format!("has an unknown value {raw}")),
    }
}

fn language(raw: i32) -> Result<Language, String> {
    required_enum(raw, pb::Language::Unspecified, |language| match language {
        pb::Language::En | pb::Language::Unspecified => Language::En,
        pb::Language::De => Language::De,
        pb::Language::Zh => Language::Zh,
        pb::Language::Ru => Language::Ru,
    })
}

fn role(raw: i32) -> Result<Role, String> {
    // The proto's values are the provider's role ids.
    required_enum(raw, pb::Role::Unspecified, |role| role as i32)
        .and_then(|id| Role::from_id(id).ok_or_else(|| format!("has an unknown value {raw}")))
}

fn status(raw: i32) -> Result<Option<MemberStatus>, String> {
    match pb::UserStatus::try_from(raw) {
        Ok(pb::UserStatus::Unspecified) => Ok(None),
        Ok(pb::UserStatus::Invited) => Ok(Some(MemberStatus::Invited)),
        Ok(pb::UserStatus::Active) => Ok(Some(MemberStatus::Active)),
        Ok(pb::UserStatus::Expired) => Ok(Some(MemberStatus::Expired)),
        Err(_) => Err(format!("has an unknown value {raw}")),
    }
}

fn cloud_access(violations: &mut Violations, access: pb::CloudAccess) -> Option<CloudAccess> {
    let pb::CloudAccess { scope } = access;
    match scope {
        None => {
            violations.add("cloud_access", "must set `client` or `projects`");
            None
        }
        Some(pb::cloud_access::Scope::Client(pb::ClientAccess { role })) => {
            match pb::CloudRole::try_from(role) {
                Ok(pb::CloudRole::Unspecified) => Some(CloudAccess::Client {
                    administrator: false,
                }),
                Ok(pb::CloudRole::ClientAdministrator) => Some(CloudAccess::Client {
                    administrator: true,
                }),
                _ => {
                    violations.add(
                        "cloud_access.client.role",
                        "must be CLOUD_ROLE_CLIENT_ADMINISTRATOR or unset (no access)",
                    );
                    None
                }
            }
        }
        Some(pb::cloud_access::Scope::Projects(pb::ProjectAccess { roles })) => {
            let mut parsed = Vec::with_capacity(roles.len());
            for (index, pb::ProjectRole { project_id, role }) in roles.into_iter().enumerate() {
                let role = match pb::CloudRole::try_from(role) {
                    Ok(pb::CloudRole::ProjectAdministrator) => {
                        ProjectCloudRole::ProjectAdministrator
                    }
                    Ok(pb::CloudRole::User) => ProjectCloudRole::User,
                    Ok(pb::CloudRole::InternalNetworkOnlyUser) => {
                        ProjectCloudRole::InternalNetworkOnlyUser
                    }
                    Ok(pb::CloudRole::Observer) => ProjectCloudRole::Observer,
                    Ok(pb::CloudRole::Unspecified | pb::CloudRole::ClientAdministrator)
                    | Err(_) => {
                        violations.add(
                            &format!("cloud_access.projects.roles[{index}].role"),
                            "must be a project role (PROJECT_ADMINISTRATOR, USER, INTERNAL_NETWORK_ONLY_USER or OBSERVER)",
                        );
                        continue;
                    }
                };
                parsed.push(ProjectRole { project_id, role });
            }
            violations.check("cloud_access.projects.roles", CloudAccess::projects(parsed))
        }
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
    ) = (
        account_id,
        name,
        email,
        language,
        role,
        cloud_access,
        request_id,
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
    })
}

pub fn get(request: pb::GetUserRequest) -> Result<(Uuid, Uuid), Error> {
    let pb::GetUserRequest {
        account_id,
        user_id,
    } = request;
    member_ids(&account_id, &user_id)
}

pub fn delete(request: pb::DeleteUserRequest) -> Result<(Uuid, Uuid), Error> {
    let pb::DeleteUserRequest {
        account_id,
        user_id,
    } = request;
    member_ids(&account_id, &user_id)
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
        name,
        language,
        role,
        cloud_access,
        two_factor_enabled,
    })
}

fn page_size(raw: i32) -> Result<u64, String> {
    match raw {
        ..0 => Err("must not be negative".to_string()),
        0 => Ok(ListQuery::DEFAULT_PAGE_SIZE),
        size => Ok((size as u64).min(ListQuery::MAX_PAGE_SIZE)),
    }
}

pub fn create_token(request: pb::CreateApiTokenRequest) -> Result<NewApiToken, Error> {
    let pb::CreateApiTokenRequest {
        account_id,
        name,
        description,
        role: raw_role,
        expires_at,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let name = v.check("name", DisplayName::parse(&name));
    let description = v.check(
        "description",
        if description.trim().chars().count() > 1000 {
            Err("must be at most 1000 characters".to_string())
        } else {
            Ok(description.trim().to_string())
        },
    );
    let role = v.check("role", role(raw_role));
    let expires_at = match expires_at {
        None => Some(None),
        Some(time) => v
            .check(
                "expires_at",
                DateTime::from_timestamp(time.seconds, time.nanos.max(0) as u32)
                    .filter(|_| (0..1_000_000_000).contains(&time.nanos))
                    .ok_or_else(|| "is not a valid time".to_string()),
            )
            .map(Some),
    };
    let (Some(account_id), Some(name), Some(description), Some(role), Some(expires_at)) =
        (account_id, name, description, role, expires_at)
    else {
        return Err(v.into_error());
    };
    Ok(NewApiToken {
        account_id,
        name,
        description,
        role,
        expires_at,
    })
}

pub fn list_tokens(request: pb::ListApiTokensRequest) -> Result<TokenQuery, Error> {
    let pb::ListApiTokensRequest {
        account_id,
        page_size: raw_page_size,
        page_token,
        issued_by,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let page_size = v.check("page_size", page_size(raw_page_size));
    let issued_by = match issued_by {
        None => Some(None),
        Some(raw) => v.check("issued_by", uuid(&raw)).map(Some),
    };
    let (Some(account_id), Some(page_size), Some(issued_by)) = (account_id, page_size, issued_by)
    else {
        return Err(v.into_error());
    };
    Ok(TokenQuery {
        account_id,
        page_size,
        page_token,
        issued_by,
    })
}

pub fn delete_token(request: pb::DeleteApiTokenRequest) -> Result<(Uuid, Uuid), Error> {
    let pb::DeleteApiTokenRequest {
        account_id,
        token_id,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let token_id = v.check("token_id", uuid(&token_id));
    match (account_id, token_id) {
        (Some(account_id), Some(token_id)) => Ok((account_id, token_id)),
        _ => Err(v.into_error()),
    }
}

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

fn optional_id(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

pub fn audit_event(
    (event, action, changes): (
        crate::store::entity::audit_event::Model,
        Action,
        Vec<Change>,
    ),
) -> pb::AuditEvent {
    pb::AuditEvent {
        id: event.id.to_string(),
        account_id: event.account_id.to_string(),
        actor_user_id: optional_id(event.actor_id),
        action: action_to_proto(action) as i32,
        target_user_id: optional_id(event.target_user_id),
        target_token_id: optional_id(event.target_token_id),
        request_id: event.request_id,
        changes: changes
            .into_iter()
            .map(
                |Change {
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
        create_time: Some(timestamp(event.created_at)),
    }
}

pub fn token(view: TokenView) -> pb::ApiToken {
    let TokenView {
        id,
        account_id,
        name,
        description,
        role,
        expires_at,
        created_at,
        last_used_at,
        expired,
        issuer_id,
        issuer_name,
        issuer_email,
        issuer_deleted,
    } = view;
    pb::ApiToken {
        id: id.to_string(),
        account_id: account_id.to_string(),
        name,
        description,
        role: role.id(),
        expires_at: expires_at.map(timestamp),
        created_at: Some(timestamp(created_at)),
        last_used_at: last_used_at.map(timestamp),
        expired,
        issuer: Some(pb::TokenIssuer {
            user_id: issuer_id.to_string(),
            name: issuer_name,
            email: issuer_email,
            deleted: issuer_deleted,
        }),
    }
}

pub fn resend(request: pb::ResendInvitationRequest) -> Result<(Uuid, Uuid), Error> {
    let pb::ResendInvitationRequest {
        account_id,
        user_id,
    } = request;
    member_ids(&account_id, &user_id)
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

pub fn list(request: pb::ListUsersRequest) -> Result<ListQuery, Error> {
    let pb::ListUsersRequest {
        account_id,
        page_size,
        page_token,
        search,
        status: raw_status,
        two_factor_enabled,
        role: raw_role,
    } = request;
    let mut v = Violations::default();
    let account_id = v.check("account_id", uuid(&account_id));
    let page_size = v.check("page_size", self::page_size(page_size));
    if search.chars().count() > 254 {
        v.add("search", "must be at most 254 characters");
    }
    let status = raw_status.map_or(Ok(None), status);
    let status = v.check("status", status);
    let role = match raw_role {
        None => Some(None),
        Some(raw) => v.check("role", role(raw)).map(Some),
    };
    let (Some(account_id), Some(page_size), Some(status), Some(role)) =
        (account_id, page_size, status, role)
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
    })
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn cloud_access_to_proto(access: CloudAccess) -> pb::CloudAccess {
    let scope = match access {
        CloudAccess::Client { administrator } => {
            pb::cloud_access::Scope::Client(pb::ClientAccess {
                role: if administrator {
                    pb::CloudRole::ClientAdministrator
                } else {
                    pb::CloudRole::Unspecified
                } as i32,
            })
        }
        CloudAccess::Projects { roles } => pb::cloud_access::Scope::Projects(pb::ProjectAccess {
            roles: roles
                .into_iter()
                .map(|ProjectRole { project_id, role }| pb::ProjectRole {
                    project_id,
                    role: match role {
                        ProjectCloudRole::ProjectAdministrator => {
                            pb::CloudRole::ProjectAdministrator
                        }
                        ProjectCloudRole::User => pb::CloudRole::User,
                        ProjectCloudRole::InternalNetworkOnlyUser => {
                            pb::CloudRole::InternalNetworkOnlyUser
                        }
                        ProjectCloudRole::Observer => pb::CloudRole::Observer,
                    } as i32,
                })
                .collect(),
        }),
    };
    pb::CloudAccess { scope: Some(scope) }
}

/// Billing, DNS, Storage, Streaming and Web security grant every member the administrator role.
fn service_roles() -> Vec<pb::ServiceAccess> {
    [
        pb::Service::Billing,
        pb::Service::Dns,
        pb::Service::Storage,
        pb::Service::Streaming,
        pb::Service::WebSecurity,
    ]
    .into_iter()
    .map(|service| pb::ServiceAccess {
        service: service as i32,
        role: pb::ServiceRole::Administrator as i32,
    })
    .collect()
}

pub fn user(member: MemberView) -> pb::User {
    let MemberView {
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
        cloud_access: Some(cloud_access_to_proto(cloud_access)),
        service_roles: service_roles(),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_invite() -> pb::InviteUserRequest {
        pb::InviteUserRequest {
            account_id: Uuid::now_v7().to_string(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            language: pb::Language::En as i32,
            role: pb::Role::Engineers as i32,
            cloud_access: None,
            request_id: None,
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
                "request_id"
            ]
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
}
