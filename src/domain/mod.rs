//! The service's vocabulary: types that can only hold valid values. Nothing here knows
//! about gRPC or the database.

mod cloud_access;
mod email;
mod language;
mod name;
mod password;
mod role;
mod secret;
mod status;

pub use cloud_access::{CloudAccess, ProjectCloudRole, ProjectRole};
pub use email::Email;
pub use language::Language;
pub use name::DisplayName;
pub use password::Password;
pub use role::Role;
pub use secret::{ApiTokenSecret, InvitationSecret, SecretHash};
pub use status::MemberStatus;
