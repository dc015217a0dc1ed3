//! Cloud access and the other services' roles.

use super::pb;
use crate::domain::{
    CloudAccess, ProjectCloudRole, ProjectRole, Role,
    services::{OtherService, ServiceRole, other_service_roles},
};
use crate::service::Violations;

pub(super) fn cloud_access(
    violations: &mut Violations,
    access: pb::CloudAccess,
) -> Option<CloudAccess> {
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

pub(super) fn cloud_access_to_proto(access: CloudAccess) -> pb::CloudAccess {
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

/// The member's role in each of the other services, as the domain decides it.
pub(super) fn service_roles(role: Role) -> Vec<pb::ServiceAccess> {
    other_service_roles(role)
        .into_iter()
        .map(|(service, service_role)| pb::ServiceAccess {
            service: match service {
                OtherService::Billing => pb::Service::Billing,
                OtherService::Dns => pb::Service::Dns,
                OtherService::Storage => pb::Service::Storage,
                OtherService::Streaming => pb::Service::Streaming,
                OtherService::WebSecurity => pb::Service::WebSecurity,
            } as i32,
            role: match service_role {
                ServiceRole::Administrator => pb::ServiceRole::Administrator,
            } as i32,
        })
        .collect()
}
