//! UpdateUser (R11, R14, R15): who may change which field.

use uuid::Uuid;

use super::{Caller, Error, UserService};
use crate::domain::{Member, MemberChanges};

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
        // Who may change which field is decided by the store, under the account's lock.
        Ok(self
            .store
            .update_member(account_id, user_id, changes, &self.actor(caller))
            .await?)
    }
}
