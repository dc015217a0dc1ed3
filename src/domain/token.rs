//! API tokens (R15): what a reader sees of one, and the rules for issuing and managing them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Refusal, Role};

/// An account may hold this many live tokens at most.
pub const MAX_LIVE_TOKENS_PER_ACCOUNT: u64 = 100;

/// A token as its readers see it at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub description: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expired: bool,
    pub issuer_id: Uuid,
    pub issuer_name: String,
    pub issuer_email: String,
    /// The issuer is no longer a member of the account.
    pub issuer_deleted: bool,
}

/// A live token presented as a credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credential {
    pub token_id: Uuid,
    pub account_id: Uuid,
    pub issuer_id: Uuid,
    pub role: Role,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What a new token asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A caller's effective role in an account: their member role, capped by the role of the
/// token they called with, if any.
pub fn effective_role(member_role: Role, credential_role: Option<Role>) -> Role {
    match credential_role {
        Some(ceiling) => member_role.min(ceiling),
        None => member_role,
    }
}

/// A token may be issued with at most its issuer's effective role, an expiry in the future
/// (or none), and while the account holds fewer than the most live tokens it may.
pub fn check_grant(
    issuer_role: Role,
    grant: TokenGrant,
    live_tokens_in_account: u64,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if grant.role > issuer_role {
        return Err(Refusal::TokenRoleAboveIssuer);
    }
    if grant.expires_at.is_some_and(|at| at <= now) {
        return Err(Refusal::ExpiryNotInFuture);
    }
    if live_tokens_in_account >= MAX_LIVE_TOKENS_PER_ACCOUNT {
        return Err(Refusal::TooManyTokens {
            max: MAX_LIVE_TOKENS_PER_ACCOUNT,
        });
    }
    Ok(())
}

/// Administrators manage every token of the account; other members only their own.
pub fn may_manage(caller_role: Role, caller_id: Uuid, issuer_id: Uuid) -> bool {
    caller_role.is_administrator() || caller_id == issuer_id
}

/// Whose tokens a listing shows: administrators choose (`None`: everyone's); other members
/// see their own, and asking for another member's is refused.
pub fn listed_issuer(
    caller_role: Role,
    caller_id: Uuid,
    requested: Option<Uuid>,
) -> Result<Option<Uuid>, Refusal> {
    if caller_role.is_administrator() {
        return Ok(requested);
    }
    match requested {
        Some(issuer) if issuer != caller_id => Err(Refusal::AdministratorRequired {
            what: "list other members' tokens",
        }),
        _ => Ok(Some(caller_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn a_token_credential_caps_its_members_role() {
        use Role::*;
        let table = [
            (Administrators, None, Administrators),
            (Administrators, Some(Users), Users),
            (Users, Some(Administrators), Users),
            (Engineers, Some(Engineers), Engineers),
        ];
        for (member, credential, effective) in table {
            assert_eq!(effective_role(member, credential), effective);
        }
    }

    #[test]
    fn grants_stay_within_the_issuers_role_the_future_and_the_cap() {
        let now = Utc::now();
        let grant = |role, expires_at| TokenGrant { role, expires_at };
        let table = [
            (Role::Engineers, grant(Role::Engineers, None), 0, Ok(())),
            (
                Role::Engineers,
                grant(Role::Users, Some(now + TimeDelta::hours(1))),
                99,
                Ok(()),
            ),
            (
                Role::Engineers,
                grant(Role::Administrators, None),
                0,
                Err(Refusal::TokenRoleAboveIssuer),
            ),
            (
                Role::Users,
                grant(Role::Users, Some(now)),
                0,
                Err(Refusal::ExpiryNotInFuture),
            ),
            (
                Role::Administrators,
                grant(Role::Users, None),
                100,
                Err(Refusal::TooManyTokens { max: 100 }),
            ),
        ];
        for (issuer, grant, live, expected) in table {
            assert_eq!(
                check_grant(issuer, grant, live, now),
                expected,
                "{issuer:?} {grant:?} {live}"
            );
        }
    }

    #[test]
    fn members_manage_and_list_their_own_tokens_and_administrators_all() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        for role in Role::ALL {
            let administrator = role.is_administrator();
            assert!(may_manage(role, me, me), "{role:?}");
            assert_eq!(may_manage(role, me, other), administrator, "{role:?}");
            let table = [
                (
                    None,
                    if administrator {
                        Ok(None)
                    } else {
                        Ok(Some(me))
                    },
                ),
                (Some(me), Ok(Some(me))),
                (
                    Some(other),
                    if administrator {
                        Ok(Some(other))
                    } else {
                        Err(Refusal::AdministratorRequired {
                            what: "list other members' tokens",
                        })
                    },
                ),
            ];
            for (requested, expected) in table {
                assert_eq!(
                    listed_issuer(role, me, requested),
                    expected,
                    "{role:?} asking for {requested:?}"
                );
            }
        }
    }
}
