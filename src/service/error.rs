//! The use cases' error: each variant is one decision a client can act on. The gRPC edge
//! maps it to a status in one exhaustive match.

use std::fmt;

use uuid::Uuid;

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {}", join(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
    },
    #[error("Account {0} not found")]
    AccountNotFound(Uuid),
    #[error("User {user_id} not found in account {account_id}")]
    UserNotFound { account_id: Uuid, user_id: Uuid },
    #[error("User {user_id} has already been invited to account {account_id}")]
    AlreadyInvited { account_id: Uuid, user_id: Uuid },
    #[error("User {user_id} has already accepted the invitation to account {account_id}")]
    InvitationAccepted { account_id: Uuid, user_id: Uuid },
    #[error("The invitation of user {user_id} was sent less than a minute ago; try again in {} s", retry_after.as_secs().max(1))]
    ResendTooSoon {
        user_id: Uuid,
        retry_after: std::time::Duration,
    },
    #[error(
        "This invitation link is not valid: it is unknown, was already used, or was replaced by a newer invitation"
    )]
    InvitationNotFound,
    #[error("This invitation has expired. An administrator of the account can resend it.")]
    InvitationExpired,
    #[error("You can't remove the user as they have active tokens.")]
    UserHasActiveTokens,
    #[error("An account must keep at least one administrator.")]
    LastAdministrator,
    #[error("The specified user has issued a token with a higher role.")]
    TokenRoleAboveUserRole,
    #[error("The account holds 100 live API tokens, the most it may; delete one first.")]
    TooManyTokens,
    #[error("API token {token_id} not found in account {account_id}")]
    TokenNotFound { account_id: Uuid, token_id: Uuid },
    /// Something failed that the client cannot fix; logged, never detailed to the client.
    #[error("{0}")]
    Internal(&'static str),
    /// The database failed; the cause is logged, never sent to the client.
    #[error("storage failure")]
    Storage(#[from] sea_orm::DbErr),
}

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
