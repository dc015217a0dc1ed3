//! A member of an account as its readers see it, and what UpdateUser may change.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{CloudAccess, DisplayName, InvitationDelivery, Language, MemberStatus, Role};

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
    /// The email of the pending invitation; `None` once accepted, or when no email was
    /// queued for it.
    pub invitation_delivery: Option<InvitationDelivery>,
}

/// What an account sees of the person behind a member.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub language: Language,
    pub two_factor_enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// What an account wrote when it invited a member.
#[derive(Clone, Debug, PartialEq)]
pub struct InvitedProfile {
    pub name: String,
    pub language: Language,
    /// When the membership was made.
    pub created_at: DateTime<Utc>,
}

/// R17: until a member accepts, the account sees only what it wrote in the invitation, with
/// two-factor authentication off, never the profile of a user who exists elsewhere; once
/// they accept, it sees the user's own profile.
pub fn visible_profile(status: MemberStatus, invited: InvitedProfile, own: Profile) -> Profile {
    match status {
        MemberStatus::Active => own,
        MemberStatus::Invited | MemberStatus::Expired => Profile {
            name: invited.name,
            language: invited.language,
            two_factor_enabled: false,
            created_at: invited.created_at,
        },
    }
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn an_account_sees_its_invitation_until_the_member_accepts() {
        let invited_at = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
        let joined_elsewhere = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        let invited = InvitedProfile {
            name: "Bobby".into(),
            language: Language::De,
            created_at: invited_at,
        };
        let own = Profile {
            name: "Bob Boss".into(),
            language: Language::Zh,
            two_factor_enabled: true,
            created_at: joined_elsewhere,
        };
        let as_invited = Profile {
            name: "Bobby".into(),
            language: Language::De,
            two_factor_enabled: false,
            created_at: invited_at,
        };
        let table = [
            (MemberStatus::Invited, as_invited.clone()),
            (MemberStatus::Expired, as_invited),
            (MemberStatus::Active, own.clone()),
        ];
        for (status, seen) in table {
            assert_eq!(
                visible_profile(status, invited.clone(), own.clone()),
                seen,
                "{status:?}"
            );
        }
    }
}
