//! UpdateUser (R11, R14, R15): who may change which field.

use uuid::Uuid;

use super::{Caller, Error, MemberView, UserService, caller};
use crate::domain::{CloudAccess, DisplayName, Language, Role};
use crate::store::{
    Actor,
    changes::{ChangeError, MemberChanges, update},
};

/// A validated UpdateUser request: the fields given.
#[derive(Debug)]
pub struct UserUpdate {
    pub account_id: Uuid,
    pub user_id: Uuid,
    pub name: Option<DisplayName>,
    pub language: Option<Language>,
    pub role: Option<Role>,
    pub cloud_access: Option<CloudAccess>,
    pub two_factor_enabled: Option<bool>,
}

impl UserUpdate {
    /// The fields given, by their proto names.
    fn fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("language", self.language.is_some()),
            ("role", self.role.is_some()),
            ("cloud_access", self.cloud_access.is_some()),
            ("two_factor_enabled", self.two_factor_enabled.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        .collect()
    }
}

/// The fields a caller may change (R11 and the article's edit dialog).
fn editable(administrator: bool, themself: bool) -> &'static [&'static str] {
    match (administrator, themself) {
        // Turning two-factor on or off is reported for every user about themself.
        (true, true) => &["name", "role", "language", "two_factor_enabled"],
        (true, false) => &["role", "cloud_access"],
        (false, true) => &["name", "language", "two_factor_enabled"],
        (false, false) => &[],
    }
}

impl UserService {
    #[tracing::instrument(skip_all, fields(account_id = %request.account_id, user_id = %request.user_id), err)]
    pub async fn update(&self, caller: &Caller, request: UserUpdate) -> Result<MemberView, Error> {
        let role = caller::role_in(&self.db, caller, request.account_id).await?;
        let allowed = editable(role.is_administrator(), caller.user_id == request.user_id);
        let forbidden: Vec<&str> = request
            .fields()
            .into_iter()
            .filter(|field| !allowed.contains(field))
            .collect();
        if !forbidden.is_empty() {
            // A member learns nothing about other members' existence from this answer
            // that ListUsers would not tell them.
            return Err(Error::PermissionDenied {
                reason: "FIELD_NOT_EDITABLE",
                message: format!(
                    "You may not change these fields of this user: {}",
                    forbidden.join(", ")
                ),
            });
        }
        let now = self.clock.now();
        let actor = Actor {
            user_id: caller.user_id,
            request_id: &caller.request_id,
            now,
        };
        let UserUpdate {
            account_id,
            user_id,
            name,
            language,
            role,
            cloud_access,
            two_factor_enabled,
        } = request;
        let changes = MemberChanges {
            name,
            language,
            role,
            cloud_access,
            two_factor_enabled,
        };
        let member = update(&self.db, account_id, user_id, changes, &actor)
            .await
            .map_err(|error| change_error(error, account_id, user_id))?;
        MemberView::from_rows(member, now)
    }
}

pub(super) fn change_error(error: ChangeError, account_id: Uuid, user_id: Uuid) -> Error {
    match error {
        ChangeError::NotFound => Error::UserNotFound {
            account_id,
            user_id,
        },
        ChangeError::LastAdministrator => Error::LastAdministrator,
        ChangeError::TokenRoleAbove => Error::TokenRoleAboveUserRole,
        ChangeError::HasLiveTokens => Error::UserHasActiveTokens,
        ChangeError::Db(err) => Error::Storage(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_editable_fields_follow_the_article() {
        assert_eq!(editable(true, false), ["role", "cloud_access"]);
        assert!(editable(true, true).contains(&"name"));
        assert!(!editable(true, true).contains(&"cloud_access"));
        assert!(!editable(false, true).contains(&"role"));
        assert!(editable(false, false).is_empty());
    }
}
