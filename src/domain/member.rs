//! A member of an account as its readers see it, and what UpdateUser may change.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{CloudAccess, DisplayName, Language, MemberStatus, Role};

/// A user's membership of one account, read at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub user_id: Uuid,
    pub account_id: Uuid,
    pub email: String,
    pub name: String,
    pub language: Language,
    pub role: Role,
    pub cloud_access: CloudAccess,
    pub status: MemberStatus,
    pub two_factor_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub invited_at: DateTime<Utc>,
    /// Set while the invitation is pending or expired; `None` once accepted.
    pub invitation_expires_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
}

impl Member {
    /// An accepted member holding the ADMINISTRATORS role.
    pub fn is_active_administrator(&self) -> bool {
        self.status == MemberStatus::Active && self.role.is_administrator()
    }
}

/// A field of a member that UpdateUser can change, named as in the proto.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberField {
    Name,
    Language,
    Role,
    CloudAccess,
    TwoFactorEnabled,
}

impl MemberField {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberField::Name => "name",
            MemberField::Language => "language",
            MemberField::Role => "role",
            MemberField::CloudAccess => "cloud_access",
            MemberField::TwoFactorEnabled => "two_factor_enabled",
        }
    }

    pub(super) fn list(fields: &[MemberField]) -> String {
        fields
            .iter()
            .map(|field| field.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What UpdateUser changes; `None` keeps the value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberChanges {
    pub name: Option<DisplayName>,
    pub language: Option<Language>,
    pub role: Option<Role>,
    pub cloud_access: Option<CloudAccess>,
    pub two_factor_enabled: Option<bool>,
}

impl MemberChanges {
    /// The fields given, in the proto's order.
    pub fn fields(&self) -> Vec<MemberField> {
        [
            (MemberField::Name, self.name.is_some()),
            (MemberField::Language, self.language.is_some()),
            (MemberField::Role, self.role.is_some()),
            (MemberField::CloudAccess, self.cloud_access.is_some()),
            (
                MemberField::TwoFactorEnabled,
                self.two_factor_enabled.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        .collect()
    }
}
