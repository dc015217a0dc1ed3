//! The service's vocabulary and rules: types that can only hold valid values, read models,
//! and pure functions that take the facts a decision needs and return it or a typed
//! refusal. Nothing here knows about gRPC, the database or the rest of the crate.

pub mod administrators;
mod audit;
mod cloud_access;
pub mod delivery;
pub mod edit;
mod email;
pub mod invitation;
mod language;
pub mod member;
mod name;
mod password;
mod refusal;
mod role;
mod secret;
pub mod services;
mod status;
pub mod token;

pub use audit::{Acting, Actor, AuditAction, AuditEvent, FieldChange, LinkDelivery};
pub use cloud_access::{CloudAccess, ProjectCloudRole, ProjectRole};
pub use delivery::{DeliveryState, InvitationDelivery};
pub use email::Email;
pub use invitation::{InvitationEmail, InvitationKind};
pub use language::Language;
pub use member::{Member, MemberChanges, MemberField};
pub use name::DisplayName;
pub use password::Password;
pub use refusal::Refusal;
pub use role::Role;
pub use secret::{ApiTokenSecret, InvitationSecret, SecretHash};
pub use status::MemberStatus;
pub use token::{ApiToken, Credential, TokenGrant, TokenLimits};

#[cfg(test)]
pub(crate) mod test_support {
    use chrono::Utc;
    use uuid::Uuid;

    use super::{CloudAccess, Language, Member, MemberStatus, Role};

    /// A member of a fresh account, for the rules' tables.
    pub fn member(role: Role, status: MemberStatus) -> Member {
        let now = Utc::now();
        Member {
            user_id: Uuid::now_v7(),
            account_id: Uuid::now_v7(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            language: Language::En,
            role,
            cloud_access: CloudAccess::default_for(role),
            status,
            two_factor_enabled: false,
            created_at: now,
            invited_at: now,
            invitation_expires_at: None,
            accepted_at: Some(now),
            invitation_delivery: None,
        }
    }
}
