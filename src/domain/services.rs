//! The other services of the cloud platform and a member's role in each.

use super::Role;

/// The services besides CDN (IAM) and Cloud whose roles a member has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherService {
    Billing,
    Dns,
    Storage,
    Streaming,
    WebSecurity,
}

impl OtherService {
    pub const ALL: [OtherService; 5] = [
        OtherService::Billing,
        OtherService::Dns,
        OtherService::Storage,
        OtherService::Streaming,
        OtherService::WebSecurity,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceRole {
    Administrator,
}

/// PRODUCT.md: every member administers Billing, DNS, Storage, Streaming and Web security,
/// whatever their IAM role.
pub fn other_service_roles(_role: Role) -> Vec<(OtherService, ServiceRole)> {
    OtherService::ALL
        .into_iter()
        .map(|service| (service, ServiceRole::Administrator))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_administers_every_other_service() {
        for role in Role::ALL {
            let roles = other_service_roles(role);
            assert_eq!(roles.len(), OtherService::ALL.len());
            for service in OtherService::ALL {
                assert!(
                    roles.contains(&(service, ServiceRole::Administrator)),
                    "{role:?} {service:?}"
                );
            }
        }
    }
}
