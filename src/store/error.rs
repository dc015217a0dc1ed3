//! The store's one error: a rule's refusal, a missing row, a corrupt row, or the database.

use sea_orm::{DbErr, SqlErr};
use uuid::Uuid;

use crate::domain::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule of the domain refused the change; nothing was written.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("account {0} not found")]
    AccountNotFound(Uuid),
    #[error("user {user_id} not found in account {account_id}")]
    MemberNotFound { account_id: Uuid, user_id: Uuid },
    #[error("API token {token_id} not found in account {account_id}")]
    TokenNotFound { account_id: Uuid, token_id: Uuid },
    /// The API token the call was made with was deleted or expired since the call began.
    #[error("the calling API token is no longer live")]
    CredentialRevoked,
    /// No unconsumed invitation has this secret.
    #[error("unknown invitation")]
    InvitationNotFound,
    #[error("expired invitation")]
    InvitationExpired,
    /// Accepting made a new user, who must set a password.
    #[error("a password is required")]
    PasswordRequired,
    /// An invitation's `request_id` was used before for a different invitation.
    #[error("the request id was used for another request")]
    RequestIdReused,
    /// A stored value that this version cannot read: the row was written by hand or by a
    /// newer version. Decided once, here: it is the service's fault, not the caller's.
    #[error("stored {0} is not valid")]
    Corrupt(&'static str),
    /// A concurrent writer broke a unique constraint between our read and our write.
    #[error("conflicting concurrent write: {0}")]
    Conflict(#[source] DbErr),
    #[error("database: {0}")]
    Database(#[source] DbErr),
}

impl From<DbErr> for Error {
    fn from(error: DbErr) -> Self {
        match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Error::Conflict(error),
            _ => Error::Database(error),
        }
    }
}
