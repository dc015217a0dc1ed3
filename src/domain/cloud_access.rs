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
    /// The most projects one member's access may name: the access is stored with the
    /// membership and returned in every list of members.
    pub const MAX_PROJECTS: usize = 1000;

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

    /// Project scope with at most [`Self::MAX_PROJECTS`] projects, each at most once and
    /// with a positive id.
    pub fn projects(roles: Vec<ProjectRole>) -> Result<Self, String> {
        if roles.is_empty() {
            return Err("must name at least one project".into());
        }
        if roles.len() > Self::MAX_PROJECTS {
            return Err(format!(
                "names {} projects; at most {} are allowed",
                roles.len(),
                Self::MAX_PROJECTS
            ));
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
    fn project_scope_names_one_to_a_thousand_distinct_positive_projects() {
        let role = |project_id| ProjectRole {
            project_id,
            role: ProjectCloudRole::Observer,
        };
        let first = |n: i64| (1..=n).map(role).collect::<Vec<_>>();
        let cases = [
            (vec![role(1), role(2)], Ok(())),
            (first(1000), Ok(())),
            (
                first(1001),
                Err("names 1001 projects; at most 1000 are allowed"),
            ),
            (vec![role(1), role(1)], Err("project 1 appears twice")),
            (vec![role(0)], Err("project id 0 must be positive")),
            (vec![], Err("must name at least one project")),
        ];
        for (roles, expected) in cases {
            let outcome = CloudAccess::projects(roles.clone()).map(drop);
            assert_eq!(
                outcome,
                expected.map_err(String::from),
                "{} roles",
                roles.len()
            );
        }
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
