//! The store's one error: a rule's refusal, a missing row, a corrupt row, the database out of
//! reach, or another failure of the database.

use sea_orm::{DbErr, RuntimeErr, SqlErr, sqlx};
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
    /// The database cannot be reached or is shutting down: the connection broke, no
    /// connection could be made in time, or the server said it cannot serve now. Worth
    /// trying again shortly; nothing was committed by this call.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] DbErr),
    #[error("database: {0}")]
    Database(#[source] DbErr),
}

impl From<DbErr> for Error {
    fn from(error: DbErr) -> Self {
        match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Error::Conflict(error),
            _ if is_unavailable(&error) => Error::Unavailable(error),
            _ => Error::Database(error),
        }
    }
}

/// Whether an error says the database is out of reach rather than that the statement failed:
/// decided here once, for every query of the store.
pub(crate) fn is_unavailable(error: &DbErr) -> bool {
    match error {
        // No connection within the acquire timeout, or the pool is closing.
        DbErr::ConnectionAcquire(_) => true,
        // No connection could be made: refused, reset, cut during the handshake (seen as an
        // unexpected reply), or the server refusing sessions.
        DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            sqlx_unavailable(error)
        }
        _ => false,
    }
}

fn sqlx_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| unavailable_code(&code)),
        _ => false,
    }
}

/// PostgreSQL's SQLSTATEs of a connection that failed or of a server that is going away:
/// class 08 (connection exception), 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot
/// connect now (starting up, or in recovery). SQLite's "busy" (5, with its extended codes)
/// and "cannot open" (14): the file is locked past the busy timeout, or cannot be opened.
fn unavailable_code(code: &str) -> bool {
    if code.len() == 5 && code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    code.parse::<u32>()
        .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 14))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::ConnAcquireErr;

    use super::*;

    fn query(error: sqlx::Error) -> DbErr {
        DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)))
    }

    #[test]
    fn connection_failures_are_unavailable_and_statement_failures_are_not() {
        let broken_pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let unavailable = [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
            DbErr::Conn(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Io(
                broken_pipe(),
            )))),
            DbErr::Conn(RuntimeErr::Internal("connection refused".into())),
            DbErr::Conn(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Protocol(
                "unexpected response from SSLRequest: 0x00".into(),
            )))),
            query(sqlx::Error::Io(broken_pipe())),
            query(sqlx::Error::PoolTimedOut),
            query(sqlx::Error::PoolClosed),
        ];
        for error in unavailable {
            assert!(
                matches!(Error::from(error.clone()), Error::Unavailable(_)),
                "{error}"
            );
        }
        let not_unavailable = [
            query(sqlx::Error::RowNotFound),
            query(sqlx::Error::Protocol("unexpected message".into())),
            DbErr::Custom("bad".into()),
            DbErr::RecordNotFound("row".into()),
        ];
        for error in not_unavailable {
            assert!(
                matches!(Error::from(error.clone()), Error::Database(_)),
                "{error}"
            );
        }
    }

    #[test]
    fn sqlstates_of_a_lost_or_departing_server_are_unavailable() {
        for code in [
            "08000", "08001", "08003", "08006", "08P01", "57P01", "57P02", "57P03",
        ] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["23505", "40001", "40P01", "57014", "42P01", "XX000"] {
            assert!(!unavailable_code(code), "{code}");
        }
        // SQLite: busy and its extended codes, cannot open; not constraint (19) or corrupt (11).
        for code in ["5", "517", "14"] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["19", "2067", "11", "1"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
