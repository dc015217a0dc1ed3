//! The one mapping from the service's errors to gRPC statuses. It is exhaustive: a new
//! error variant does not compile until its code is decided here.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, QuotaViolation, StatusExt};

use crate::domain::Refusal;
use crate::service::Error;

const DOMAIN: &str = "usermgmt";

fn with_info(
    code: Code,
    message: String,
    reason: &str,
    metadata: HashMap<String, String>,
) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, DOMAIN, metadata),
    )
}

fn ids(pairs: [(&str, uuid::Uuid); 2]) -> HashMap<String, String> {
    pairs
        .into_iter()
        .map(|(key, id)| (key.to_string(), id.to_string()))
        .collect()
}

/// A rule's refusal: exhaustive too, so a new refusal needs its code decided here.
fn refused(refusal: Refusal, message: String) -> Status {
    match refusal {
        Refusal::AdministratorRequired { .. } => with_info(
            Code::PermissionDenied,
            message,
            "ADMINISTRATOR_REQUIRED",
            HashMap::new(),
        ),
        Refusal::FieldsNotEditable(_) => with_info(
            Code::PermissionDenied,
            message,
            "FIELD_NOT_EDITABLE",
            HashMap::new(),
        ),
        Refusal::TokenRoleAboveIssuer => with_info(
            Code::PermissionDenied,
            message,
            "ROLE_ABOVE_CALLER",
            HashMap::new(),
        ),
        Refusal::ExpiryAboveCredential { limit } => with_info(
            Code::PermissionDenied,
            message,
            "EXPIRY_ABOVE_CREDENTIAL",
            HashMap::from([("limit".into(), limit.to_rfc3339())]),
        ),
        Refusal::TooManyTokensForMember { max } => with_info(
            Code::ResourceExhausted,
            message,
            "MEMBER_API_TOKEN_LIMIT_REACHED",
            HashMap::from([("max".into(), max.to_string())]),
        ),
        Refusal::ExpiryNotInFuture => Status::with_error_details(
            Code::InvalidArgument,
            message,
            ErrorDetails::with_bad_request(vec![FieldViolation::new(
                "expires_at",
                "must be in the future",
            )]),
        ),
        Refusal::LastAdministrator => with_info(
            Code::FailedPrecondition,
            message,
            "LAST_ADMINISTRATOR",
            HashMap::new(),
        ),
        Refusal::TokenRoleAboveNewRole => with_info(
            Code::FailedPrecondition,
            message,
            "USER_HAS_HIGHER_ROLE_TOKEN",
            HashMap::new(),
        ),
        Refusal::HasLiveTokens => with_info(
            Code::FailedPrecondition,
            message,
            "USER_HAS_ACTIVE_TOKENS",
            HashMap::new(),
        ),
        Refusal::TooManyTokens { .. } => with_info(
            Code::ResourceExhausted,
            message,
            "API_TOKEN_LIMIT_REACHED",
            HashMap::new(),
        ),
        Refusal::AlreadyMember {
            account_id,
            user_id,
        } => with_info(
            Code::AlreadyExists,
            message,
            "ALREADY_INVITED",
            ids([("account_id", account_id), ("user_id", user_id)]),
        ),
        Refusal::InvitationAccepted {
            account_id,
            user_id,
        } => with_info(
            Code::FailedPrecondition,
            message,
            "INVITATION_ALREADY_ACCEPTED",
            ids([("account_id", account_id), ("user_id", user_id)]),
        ),
        Refusal::InviteQuotaExhausted {
            limit,
            ref window,
            retry_after,
        } => {
            let mut details = ErrorDetails::with_retry_info(Some(retry_after));
            details.set_quota_failure(vec![QuotaViolation::new(
                "account",
                format!("{limit} invitations and resends per {window}"),
            )]);
            details.set_error_info(
                "INVITE_QUOTA_EXHAUSTED",
                DOMAIN,
                HashMap::from([
                    ("limit".into(), limit.to_string()),
                    ("window".into(), window.clone()),
                ]),
            );
            Status::with_error_details(Code::ResourceExhausted, message, details)
        }
        Refusal::ResendTooSoon {
            user_id,
            retry_after,
        } => {
            let mut details = ErrorDetails::with_retry_info(Some(retry_after));
            details.set_error_info(
                "RESEND_TOO_SOON",
                DOMAIN,
                HashMap::from([("user_id".into(), user_id.to_string())]),
            );
            Status::with_error_details(Code::ResourceExhausted, message, details)
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::InvalidArgument(violations) => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|v| FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                ),
            ),
            Error::Unauthenticated(_) => with_info(
                Code::Unauthenticated,
                message,
                "UNAUTHENTICATED",
                HashMap::new(),
            ),
            Error::Refused(refusal) => refused(refusal, message),
            Error::AccountNotFound(account_id) => with_info(
                Code::NotFound,
                message,
                "ACCOUNT_NOT_FOUND",
                HashMap::from([("account_id".into(), account_id.to_string())]),
            ),
            Error::UserNotFound {
                account_id,
                user_id,
            } => with_info(
                Code::NotFound,
                message,
                "USER_NOT_FOUND",
                HashMap::from([
                    ("account_id".into(), account_id.to_string()),
                    ("user_id".into(), user_id.to_string()),
                ]),
            ),
            Error::InvitationNotFound => with_info(
                Code::NotFound,
                message,
                "INVITATION_NOT_FOUND",
                HashMap::new(),
            ),
            Error::InvitationExpired => with_info(
                Code::FailedPrecondition,
                message,
                "INVITATION_EXPIRED",
                HashMap::new(),
            ),
            Error::TokenNotFound {
                account_id,
                token_id,
            } => with_info(
                Code::NotFound,
                message,
                "API_TOKEN_NOT_FOUND",
                HashMap::from([
                    ("account_id".into(), account_id.to_string()),
                    ("token_id".into(), token_id.to_string()),
                ]),
            ),
            Error::Internal(what) => {
                tracing::error!(error = what, "internal failure");
                with_info(
                    Code::Internal,
                    "Internal error".into(),
                    "INTERNAL",
                    HashMap::new(),
                )
            }
            Error::Storage(cause) => {
                // The cause may hold SQL: it goes to the log, never to the client.
                tracing::error!(error = %cause, "storage failure");
                with_info(
                    Code::Internal,
                    "Internal error".into(),
                    "INTERNAL",
                    HashMap::new(),
                )
            }
            Error::Unavailable(cause) => {
                // Expected while the database is down or restarting: a warning, not an error.
                tracing::warn!(error = %cause, "database unavailable");
                let mut details = ErrorDetails::with_retry_info(Some(RETRY_AFTER_OUTAGE));
                details.set_error_info("DATABASE_UNAVAILABLE", DOMAIN, HashMap::new());
                Status::with_error_details(Code::Unavailable, message, details)
            }
            Error::ShuttingDown => {
                with_info(Code::Unavailable, message, "SHUTTING_DOWN", HashMap::new())
            }
        }
    }
}

/// The pause suggested to a client whose call met a database outage.
const RETRY_AFTER_OUTAGE: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::FieldViolation as Violation;

    #[test]
    fn invalid_arguments_name_every_field() {
        let status = Status::from(Error::InvalidArgument(vec![
            Violation::new("email", "is not a valid email address"),
            Violation::new("name", "is required"),
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad_request = status.get_details_bad_request().unwrap();
        let fields: Vec<_> = bad_request
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["email", "name"]);
    }

    #[test]
    fn storage_failures_say_nothing_of_their_cause() {
        let status = Status::from(Error::Storage("SELECT secret FROM users".into()));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "Internal error");
        assert_eq!(status.get_details_error_info().unwrap().reason, "INTERNAL");
    }

    #[test]
    fn an_unreachable_database_is_unavailable_and_says_nothing_of_its_cause() {
        let status = Status::from(Error::Unavailable(
            "error communicating with database: connection reset by 10.0.0.7:5432".into(),
        ));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "The service cannot reach its database right now; try again shortly"
        );
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "DATABASE_UNAVAILABLE");
        assert_eq!(info.domain, "usermgmt");
        assert!(status.get_details_retry_info().is_some());
    }
}
