use serde::{Deserialize, Serialize};

use super::Role;

/// A member's access to the Cloud service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scope")]
pub enum CloudAccess {
    /// One scope for all projects: administrator, or no access.
    Client { administrator: bool },
    /// A role per project; each project at most once.
    Projects { roles: Vec<ProjectRole> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRole {
    pub project_id: i64,
    pub role: ProjectCloudRole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectCloudRole {
    ProjectAdministrator,
    User,
    InternalNetworkOnlyUser,
    Observer,
}

impl CloudAccess {
    /// The access that follows from the IAM role when none is named.
    pub fn default_for(role: Role) -> Self {
        CloudAccess::Client {
            administrator: role.is_administrator(),
        }
    }

    /// The access as stored and as the audit trail shows it (JSON).
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads [`CloudAccess::to_text`]'s form.
    pub fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Project scope with every project at most once and positive ids.
    pub fn projects(roles: Vec<ProjectRole>) -> Result<Self, String> {
        if roles.is_empty() {
            return Err("must name at least one project".into());
        }
        let mut seen = std::collections::HashSet::new();
        for project in &roles {
            if project.project_id <= 0 {
                return Err(format!(
                    "project id {} must be positive",
                    project.project_id
                ));
            }
            if !seen.insert(project.project_id) {
                return Err(format!("project {} appears twice", project.project_id));
            }
        }
        Ok(CloudAccess::Projects { roles })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_access_follows_the_role_when_absent() {
        assert_eq!(
            CloudAccess::default_for(Role::Administrators),
            CloudAccess::Client {
                administrator: true
            }
        );
        for role in Role::ALL
            .into_iter()
            .filter(|role| !role.is_administrator())
        {
            assert_eq!(
                CloudAccess::default_for(role),
                CloudAccess::Client {
                    administrator: false
                }
            );
        }
    }

    #[test]
    fn a_project_may_appear_only_once() {
        let role = |project_id| ProjectRole {
            project_id,
            role: ProjectCloudRole::Observer,
        };
        assert!(CloudAccess::projects(vec![role(1), role(2)]).is_ok());
        assert!(CloudAccess::projects(vec![role(1), role(1)]).is_err());
        assert!(CloudAccess::projects(vec![role(0)]).is_err());
        assert!(CloudAccess::projects(vec![]).is_err());
    }

    #[test]
    fn cloud_access_round_trips_through_json() {
        let access = CloudAccess::projects(vec![ProjectRole {
            project_id: 7,
            role: ProjectCloudRole::InternalNetworkOnlyUser,
        }])
        .unwrap();
        assert_eq!(CloudAccess::from_text(&access.to_text()), Some(access));
        assert_eq!(CloudAccess::from_text("{\"scope\":\"nowhere\"}"), None);
    }
}
