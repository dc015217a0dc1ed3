//! AcceptInvitation (R9): the secret alone is the credential.

use super::{Error, UserService, error::PASSWORD_REQUIRED};
use crate::domain::{Password, SecretHash};
use crate::store::{Accepted, Pending};

impl UserService {
    /// Accepts the invitation whose link carries `token`. A new user must give a password;
    /// nothing is consumed when it is missing or invalid.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn accept(
        &self,
        token: &str,
        password: Option<String>,
        request_id: &str,
    ) -> Result<Accepted, Error> {
        let hash = SecretHash::of(token.trim());
        let needs_password = match self
            .store
            .pending_invitation(&hash, self.clock.now())
            .await?
        {
            Pending::Unknown => return Err(Error::InvitationNotFound),
            Pending::Expired => return Err(Error::InvitationExpired),
            Pending::Valid { needs_password } => needs_password,
        };
        let password_hash = match (needs_password, password) {
            (true, None) => return Err(Error::invalid("password", PASSWORD_REQUIRED)),
            (true, Some(raw)) => {
                let password = Password::parse(raw).map_err(|e| Error::invalid("password", e))?;
                Some(self.passwords.hash(password).await?)
            }
            (false, None) => None,
            (false, Some(_)) => {
                return Err(Error::invalid(
                    "password",
                    "must be absent: this user already has a password",
                ));
            }
        };
        let accepted = self
            .store
            .accept(&hash, password_hash, request_id, self.clock.now())
            .await?;
        self.metrics.invitation_accepted();
        tracing::info!(account_id = %accepted.account_id, user_id = %accepted.user_id, "invitation accepted");
        Ok(accepted)
    }
}
