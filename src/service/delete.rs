//! DeleteUser (R12–R14).

use uuid::Uuid;

use super::{Caller, Error, UserService};

impl UserService {
    #[tracing::instrument(skip_all, fields(%account_id, %user_id), err(level = "info"))]
    pub async fn delete(
        &self,
        caller: &Caller,
        account_id: Uuid,
        user_id: Uuid,
    ) -> Result<(), Error> {
        self.store
            .remove_member(account_id, user_id, &self.actor(caller))
            .await?;
        tracing::info!("user removed from the account");
        Ok(())
    }
}
