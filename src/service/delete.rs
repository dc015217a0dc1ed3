//! DeleteUser (R12–R14).

use uuid::Uuid;

use super::{Caller, Error, UserService, caller, update::change_error};
use crate::store::{Actor, changes::remove};

impl UserService {
    #[tracing::instrument(skip_all, fields(%account_id, %user_id), err)]
    pub async fn delete(
        &self,
        caller: &Caller,
        account_id: Uuid,
        user_id: Uuid,
    ) -> Result<(), Error> {
        caller::administrator_of(&self.db, caller, account_id, "remove users").await?;
        let actor = Actor {
            user_id: caller.user_id,
            request_id: &caller.request_id,
            now: self.clock.now(),
        };
        remove(&self.db, account_id, user_id, &actor)
            .await
            .map_err(|error| change_error(error, account_id, user_id))?;
        tracing::info!("user removed from the account");
        Ok(())
    }
}
