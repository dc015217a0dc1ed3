//! UpdateUser (R11, R14, R15): who may change which field.

use uuid::Uuid;

use super::{Caller, Error, UserService, caller};
use crate::domain::{Member, MemberChanges, edit::check_editable};

/// A validated UpdateUser request: the member and the fields given.
#[derive(Debug)]
pub struct UserUpdate {
    pub account_id: Uuid,
    pub user_id: Uuid,
    pub changes: MemberChanges,
}

impl UserService {
    #[tracing::instrument(skip_all, fields(account_id = %request.account_id, user_id = %request.user_id), err(level = "info"))]
    pub async fn update(&self, caller: &Caller, request: UserUpdate) -> Result<Member, Error> {
        let UserUpdate {
            account_id,
            user_id,
            changes,
        } = request;
        let role = caller::role_in(&self.store, caller, account_id).await?;
        // A member learns nothing about other members' existence from this answer that
        // ListUsers would not tell them.
        check_editable(role.is_administrator(), caller.user_id == user_id, &changes)?;
        Ok(self
            .store
            .update_member(account_id, user_id, changes, &self.actor(caller))
            .await?)
    }
}
