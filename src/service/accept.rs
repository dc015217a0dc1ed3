//! AcceptInvitation (R9): the secret alone is the credential.

use uuid::Uuid;

use super::{Error, UserService};
use crate::domain::{Password, SecretHash};
use crate::store::invitations::{AcceptError, Pending, accept, pending};

impl UserService {
    /// Accepts the invitation whose link carries `token`; returns (account id, user id).
    /// A new user must give a password; nothing is consumed when it is missing or invalid.
    #[tracing::instrument(skip_all, err)]
    pub async fn accept(
        &self,
        token: &str,
        password: Option<String>,
        request_id: &str,
    ) -> Result<(Uuid, Uuid), Error> {
        let hash = SecretHash::of(token.trim());
        let needs_password = match pending(&self.db, &hash, self.clock.now()).await? {
            Pending::Unknown => return Err(Error::InvitationNotFound),
            Pending::Expired => return Err(Error::InvitationExpired),
            Pending::Valid { needs_password } => needs_password,
        };
        let password_hash = match (needs_password, password) {
            (true, None) => {
                return Err(Error::invalid(
                    "password",
                    "is required to create the new user's password",
                ));
            }
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
        let (account_id, user_id) =
            accept(&self.db, &hash, password_hash, request_id, self.clock.now())
                .await
                .map_err(|error| match error {
                    AcceptError::Unknown => Error::InvitationNotFound,
                    AcceptError::Expired => Error::InvitationExpired,
                    AcceptError::PasswordRequired => {
                        Error::invalid("password", "is required to create the new user's password")
                    }
                    AcceptError::Db(err) => Error::Storage(err),
                })?;
        tracing::info!(%account_id, %user_id, "invitation accepted");
        Ok((account_id, user_id))
    }
}
