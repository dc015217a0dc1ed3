//! Why a rule refused: every rule of the domain answers with one of these.

use std::time::Duration;

use chrono::{DateTime, Utc};

use uuid::Uuid;

use super::MemberField;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Only an administrator of the account may do this; `what` completes "may …".
    #[error("Only administrators of the account may {what}")]
    AdministratorRequired { what: &'static str },
    /// The caller may not change these fields of this member.
    #[error("You may not change these fields of this user: {}", MemberField::list(.0))]
    FieldsNotEditable(Vec<MemberField>),
    /// The change would leave the account without an active administrator.
    #[error("An account must keep at least one administrator.")]
    LastAdministrator,
    /// The member issued a live token whose role is above the role they would get.
    #[error("The specified user has issued a token with a higher role.")]
    TokenRoleAboveNewRole,
    /// The member still holds live tokens.
    #[error("You can't remove the user as they have active tokens.")]
    HasLiveTokens,
    /// A token's role may not exceed its issuer's effective role.
    #[error("A token's role may not be higher than its issuer's")]
    TokenRoleAboveIssuer,
    /// A token minted with a token expires no later than it, and is permanent only if it is.
    #[error("A token created with an API token must expire no later than it ({limit})")]
    ExpiryAboveCredential { limit: DateTime<Utc> },
    /// A member may hold this many live tokens at most.
    #[error("You hold {max} live API tokens, the most one member may; delete one first.")]
    TooManyTokensForMember { max: u64 },
    /// A token's expiry must lie in the future.
    #[error("invalid request: expires_at must be in the future")]
    ExpiryNotInFuture,
    /// The account holds the most live tokens it may.
    #[error("The account holds {max} live API tokens, the most it may; delete one first.")]
    TooManyTokens { max: u64 },
    /// The email's user already belongs to the account.
    #[error("User {user_id} has already been invited to account {account_id}")]
    AlreadyMember { account_id: Uuid, user_id: Uuid },
    /// The member accepted their invitation: there is nothing to resend.
    #[error("User {user_id} has already accepted the invitation to account {account_id}")]
    InvitationAccepted { account_id: Uuid, user_id: Uuid },
    /// The account made as many invitations and resends as its quota allows in the window.
    #[error("The account has made {limit} invitations and resends in the last {window}, as many as it may; try again in {} s", retry_after.as_secs().max(1))]
    InviteQuotaExhausted {
        limit: u32,
        window: String,
        retry_after: Duration,
    },
    /// The member's invitation was sent too recently.
    #[error("The invitation of user {user_id} was sent less than a minute ago; try again in {} s", retry_after.as_secs().max(1))]
    ResendTooSoon {
        user_id: Uuid,
        retry_after: Duration,
    },
}
