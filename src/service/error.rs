//! The use cases' error: each variant is one decision a client can act on. The gRPC edge
//! maps it to a status in one exhaustive match.

use std::fmt;

use uuid::Uuid;

use crate::domain::Refusal;
use crate::store;

/// One bad field of a request, named as in the proto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.description)
    }
}

/// A failure the client cannot fix (a database error, a corrupt row): logged with its
/// cause, never detailed to the client.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {}", join(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A rule of the domain refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("Account {0} not found")]
    AccountNotFound(Uuid),
    #[error("User {user_id} not found in account {account_id}")]
    UserNotFound { account_id: Uuid, user_id: Uuid },
    #[error(
        "This invitation link is not valid: it is unknown, was already used, or was replaced by a newer invitation"
    )]
    InvitationNotFound,
    #[error("This invitation has expired. An administrator of the account can resend it.")]
    InvitationExpired,
    #[error("API token {token_id} not found in account {account_id}")]
    TokenNotFound { account_id: Uuid, token_id: Uuid },
    /// Something failed that the client cannot fix; logged, never detailed to the client.
    #[error("{0}")]
    Internal(&'static str),
    /// The storage failed; the cause is logged, never sent to the client.
    #[error("storage failure")]
    Storage(Cause),
    /// The database is out of reach for now; the client may try again. The cause is logged,
    /// never sent to the client.
    #[error("The service cannot reach its database right now; try again shortly")]
    Unavailable(Cause),
    /// The server is shutting down: a stream ends and its client reconnects (elsewhere).
    #[error("The server is shutting down; reconnect to go on")]
    ShuttingDown,
}

/// The one mapping from the store's errors to the service's.
impl From<store::Error> for Error {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::Refused(refusal) => Error::Refused(refusal),
            store::Error::AccountNotFound(account_id) => Error::AccountNotFound(account_id),
            store::Error::MemberNotFound {
                account_id,
                user_id,
            } => Error::UserNotFound {
                account_id,
                user_id,
            },
            store::Error::TokenNotFound {
                account_id,
                token_id,
            } => Error::TokenNotFound {
                account_id,
                token_id,
            },
            store::Error::CredentialRevoked => {
                Error::Unauthenticated("The API token is unknown, expired or deleted")
            }
            store::Error::InvitationNotFound => Error::InvitationNotFound,
            store::Error::InvitationExpired => Error::InvitationExpired,
            store::Error::PasswordRequired => Error::invalid("password", PASSWORD_REQUIRED),
            store::Error::RequestIdReused => {
                Error::invalid("request_id", "was already used for a different invitation")
            }
            store::Error::Unavailable(_) => Error::Unavailable(Box::new(error)),
            store::Error::Corrupt(_) | store::Error::Conflict(_) | store::Error::Database(_) => {
                Error::Storage(Box::new(error))
            }
        }
    }
}

pub(super) const PASSWORD_REQUIRED: &str = "is required to create the new user's password";

fn join(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

/// Collects every bad field of a request before refusing it, so the client sees them all.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records the error of a parse under `field`, yielding the value when it parsed.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        parsed
            .map_err(|description| self.add(field, description))
            .ok()
    }

    /// The refusal naming every field recorded so far.
    pub fn into_error(self) -> Error {
        Error::InvalidArgument(self.0)
    }

    pub fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self.0))
        }
    }
}
