//! UpdateUser's rules (R11, R14, R15): who may change which field of whom, and what a
//! change does to the member, decided from the facts the store loads under the account lock.

use super::{
    CloudAccess, FieldChange, Member, MemberChanges, MemberField, Refusal, Role,
    administrators::check_administrator_remains,
};

/// What the store knows about a member's account when it asks a rule: loaded under the
/// account's lock, so it still holds when the decision is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberFacts {
    /// Active administrators of the account other than this member.
    pub other_active_administrators: u64,
    /// The highest role among the live tokens this member issued in the account.
    pub highest_live_token_role: Option<Role>,
}

/// The fields a caller may change (R11 and the article's edit dialog).
pub fn editable_fields(administrator: bool, themself: bool) -> &'static [MemberField] {
    use MemberField::*;
    match (administrator, themself) {
        // Turning two-factor on or off is reported for every user about themself.
        (true, true) => &[Name, Role, Language, TwoFactorEnabled],
        (true, false) => &[Role, CloudAccess],
        (false, true) => &[Name, Language, TwoFactorEnabled],
        (false, false) => &[],
    }
}

/// Refuses the change when it names a field the caller may not change, naming them all.
pub fn check_editable(
    administrator: bool,
    themself: bool,
    changes: &MemberChanges,
) -> Result<(), Refusal> {
    let allowed = editable_fields(administrator, themself);
    let forbidden: Vec<MemberField> = changes
        .fields()
        .into_iter()
        .filter(|field| !allowed.contains(field))
        .collect();
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(Refusal::FieldsNotEditable(forbidden))
    }
}

/// A role may not fall below a live token its member issued.
pub fn check_role_covers_tokens(
    role: Role,
    highest_live_token_role: Option<Role>,
) -> Result<(), Refusal> {
    if highest_live_token_role.is_some_and(|token_role| token_role > role) {
        Err(Refusal::TokenRoleAboveNewRole)
    } else {
        Ok(())
    }
}

/// The member after the change, and what changed, for the audit trail.
#[derive(Clone, Debug, PartialEq)]
pub struct Edited {
    pub member: Member,
    pub changes: Vec<FieldChange>,
}

/// Applies the changes to the member, keeping an active administrator in the account and
/// every live token within its member's role. Cloud access follows a new role unless the
/// request names it.
pub fn apply_changes(
    current: &Member,
    changes: MemberChanges,
    facts: MemberFacts,
) -> Result<Edited, Refusal> {
    let mut member = current.clone();
    let mut log = Vec::new();
    let mut note = |field: MemberField, before: String, after: String| {
        if before != after {
            log.push(FieldChange {
                field: field.as_str().into(),
                before,
                after,
            });
        }
    };
    let MemberChanges {
        name,
        language,
        role,
        cloud_access,
        two_factor_enabled,
    } = changes;
    if let Some(role) = role {
        check_administrator_remains(current, Some(role), facts.other_active_administrators)?;
        check_role_covers_tokens(role, facts.highest_live_token_role)?;
        note(
            MemberField::Role,
            current.role.id().to_string(),
            role.id().to_string(),
        );
        member.role = role;
        if cloud_access.is_none() {
            let access = CloudAccess::default_for(role);
            note(
                MemberField::CloudAccess,
                current.cloud_access.to_text(),
                access.to_text(),
            );
            member.cloud_access = access;
        }
    }
    if let Some(access) = cloud_access {
        note(
            MemberField::CloudAccess,
            current.cloud_access.to_text(),
            access.to_text(),
        );
        member.cloud_access = access;
    }
    if let Some(name) = name {
        note(
            MemberField::Name,
            current.name.clone(),
            name.as_str().into(),
        );
        member.name = name.as_str().into();
    }
    if let Some(language) = language {
        note(
            MemberField::Language,
            current.language.code().into(),
            language.code().into(),
        );
        member.language = language;
    }
    if let Some(enabled) = two_factor_enabled {
        note(
            MemberField::TwoFactorEnabled,
            current.two_factor_enabled.to_string(),
            enabled.to_string(),
        );
        member.two_factor_enabled = enabled;
    }
    Ok(Edited {
        member,
        changes: log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        DisplayName, Language, MemberStatus, ProjectCloudRole, ProjectRole, test_support::member,
    };

    #[test]
    fn the_editable_fields_follow_the_article() {
        use MemberField::*;
        let table: [(bool, bool, &[MemberField]); 4] = [
            (true, false, &[Role, CloudAccess]),
            (true, true, &[Name, Role, Language, TwoFactorEnabled]),
            (false, true, &[Name, Language, TwoFactorEnabled]),
            (false, false, &[]),
        ];
        for (administrator, themself, fields) in table {
            assert_eq!(
                editable_fields(administrator, themself),
                fields,
                "administrator {administrator}, themself {themself}"
            );
        }
    }

    #[test]
    fn a_change_naming_forbidden_fields_is_refused_naming_them_all() {
        let changes = MemberChanges {
            name: Some(DisplayName::parse("Eve").unwrap()),
            role: Some(Role::Administrators),
            cloud_access: Some(CloudAccess::default_for(Role::Administrators)),
            ..MemberChanges::default()
        };
        let table = [
            // (administrator, themself, refused fields)
            (true, false, Some(vec![MemberField::Name])),
            (true, true, Some(vec![MemberField::CloudAccess])),
            (
                false,
                true,
                Some(vec![MemberField::Role, MemberField::CloudAccess]),
            ),
            (
                false,
                false,
                Some(vec![
                    MemberField::Name,
                    MemberField::Role,
                    MemberField::CloudAccess,
                ]),
            ),
        ];
        for (administrator, themself, refused) in table {
            assert_eq!(
                check_editable(administrator, themself, &changes).err(),
                refused.map(Refusal::FieldsNotEditable),
                "administrator {administrator}, themself {themself}"
            );
        }
        assert_eq!(
            check_editable(false, false, &MemberChanges::default()),
            Ok(())
        );
    }

    #[test]
    fn a_role_may_not_fall_below_a_live_token() {
        let table = [
            (Role::Users, None, Ok(())),
            (Role::Users, Some(Role::Users), Ok(())),
            (
                Role::Users,
                Some(Role::Engineers),
                Err(Refusal::TokenRoleAboveNewRole),
            ),
            (Role::Engineers, Some(Role::Engineers), Ok(())),
            (Role::Administrators, Some(Role::Administrators), Ok(())),
        ];
        for (role, token, expected) in table {
            assert_eq!(
                check_role_covers_tokens(role, token),
                expected,
                "{role:?} {token:?}"
            );
        }
    }

    #[test]
    fn a_new_role_brings_its_cloud_access_unless_one_is_named() {
        let current = member(Role::Administrators, MemberStatus::Active);
        let facts = MemberFacts {
            other_active_administrators: 1,
            highest_live_token_role: None,
        };
        let demoted = apply_changes(
            &current,
            MemberChanges {
                role: Some(Role::Engineers),
                ..MemberChanges::default()
            },
            facts,
        )
        .unwrap();
        assert_eq!(demoted.member.role, Role::Engineers);
        assert_eq!(
            demoted.member.cloud_access,
            CloudAccess::Client {
                administrator: false
            }
        );
        let fields: Vec<_> = demoted.changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["role", "cloud_access"]);
        assert_eq!(demoted.changes[0].before, "1");
        assert_eq!(demoted.changes[0].after, "5");

        let projects = CloudAccess::projects(vec![ProjectRole {
            project_id: 9,
            role: ProjectCloudRole::Observer,
        }])
        .unwrap();
        let named = apply_changes(
            &current,
            MemberChanges {
                role: Some(Role::Users),
                cloud_access: Some(projects.clone()),
                ..MemberChanges::default()
            },
            facts,
        )
        .unwrap();
        assert_eq!(named.member.cloud_access, projects);
    }

    #[test]
    fn unchanged_values_leave_no_trace() {
        let current = member(Role::Engineers, MemberStatus::Active);
        let edited = apply_changes(
            &current,
            MemberChanges {
                name: Some(DisplayName::parse("Ada").unwrap()),
                language: Some(Language::En),
                two_factor_enabled: Some(false),
                ..MemberChanges::default()
            },
            MemberFacts::default(),
        )
        .unwrap();
        assert_eq!(edited.member, current);
        assert!(edited.changes.is_empty());
    }

    #[test]
    fn demotions_are_checked_against_the_last_administrator_and_live_tokens() {
        let admin = member(Role::Administrators, MemberStatus::Active);
        let demote = |role| MemberChanges {
            role: Some(role),
            ..MemberChanges::default()
        };
        let facts = |others, token| MemberFacts {
            other_active_administrators: others,
            highest_live_token_role: token,
        };
        let table = [
            (
                demote(Role::Users),
                facts(0, None),
                Some(Refusal::LastAdministrator),
            ),
            (demote(Role::Users), facts(1, None), None),
            (demote(Role::Administrators), facts(0, None), None),
            (
                demote(Role::Users),
                facts(1, Some(Role::Engineers)),
                Some(Refusal::TokenRoleAboveNewRole),
            ),
        ];
        for (changes, facts, refusal) in table {
            assert_eq!(
                apply_changes(&admin, changes.clone(), facts).err(),
                refusal,
                "{changes:?} {facts:?}"
            );
        }
    }
}
