//! R14: an account always keeps an active administrator.

use super::{Member, Refusal, Role};

/// Requires the ADMINISTRATORS role; `what` completes "may …" in the refusal.
pub fn check_administrator(role: Role, what: &'static str) -> Result<(), Refusal> {
    if role.is_administrator() {
        Ok(())
    } else {
        Err(Refusal::AdministratorRequired { what })
    }
}

/// Refuses a change that would leave the account without an active administrator.
/// `role_after` is the member's role after the change; `None` removes the member.
pub fn check_administrator_remains(
    member: &Member,
    role_after: Option<Role>,
    other_active_administrators: u64,
) -> Result<(), Refusal> {
    let stays_administrator = role_after.is_some_and(Role::is_administrator);
    if member.is_active_administrator() && !stays_administrator && other_active_administrators == 0
    {
        Err(Refusal::LastAdministrator)
    } else {
        Ok(())
    }
}

/// R12, R14, R15: a member may be removed unless they are the last active administrator or
/// still hold live tokens.
pub fn check_removal(
    member: &Member,
    other_active_administrators: u64,
    holds_live_tokens: bool,
) -> Result<(), Refusal> {
    check_administrator_remains(member, None, other_active_administrators)?;
    if holds_live_tokens {
        return Err(Refusal::HasLiveTokens);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MemberStatus, test_support::member};

    #[test]
    fn the_last_active_administrator_stays() {
        use MemberStatus::*;
        use Role::*;
        let table = [
            // (member's role, status, role after (None: removed), other admins, refused)
            (Administrators, Active, None, 0, true),
            (Administrators, Active, Some(Users), 0, true),
            (Administrators, Active, Some(Administrators), 0, false),
            (Administrators, Active, None, 1, false),
            (Administrators, Invited, None, 0, false),
            (Administrators, Expired, Some(Users), 0, false),
            (Engineers, Active, None, 0, false),
        ];
        for (role, status, after, others, refused) in table {
            let result = check_administrator_remains(&member(role, status), after, others);
            assert_eq!(
                result.is_err(),
                refused,
                "{role:?} {status:?} -> {after:?} with {others} others"
            );
        }
    }

    #[test]
    fn only_administrators_pass_the_administrator_check() {
        for role in Role::ALL {
            assert_eq!(
                check_administrator(role, "invite users").is_ok(),
                role == Role::Administrators,
                "{role:?}"
            );
        }
    }

    #[test]
    fn a_member_holding_live_tokens_is_not_removed() {
        let engineer = member(Role::Engineers, MemberStatus::Active);
        assert_eq!(check_removal(&engineer, 0, false), Ok(()));
        assert_eq!(
            check_removal(&engineer, 0, true),
            Err(Refusal::HasLiveTokens)
        );
        let admin = member(Role::Administrators, MemberStatus::Active);
        assert_eq!(
            check_removal(&admin, 0, true),
            Err(Refusal::LastAdministrator)
        );
    }
}
