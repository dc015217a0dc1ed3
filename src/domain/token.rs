//! API tokens (R15): what a reader sees of one, and the rules for issuing and managing them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Refusal, Role};

/// An account may hold this many live tokens at most (R15).
pub const MAX_LIVE_TOKENS_PER_ACCOUNT: u64 = 100;

/// How many live tokens an account, and one member of it, may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLimits {
    pub per_account: u64,
    /// So that no single member exhausts the account's tokens.
    pub per_member: u64,
}

impl Default for TokenLimits {
    fn default() -> Self {
        Self {
            per_account: MAX_LIVE_TOKENS_PER_ACCOUNT,
            per_member: MAX_LIVE_TOKENS_PER_ACCOUNT / 2,
        }
    }
}

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
    pub expires_at: Option<DateTime<Utc>>,
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

/// What the store knows about a token's issuer when it asks whether a grant is allowed,
/// read under the account's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IssuerFacts {
    /// The issuer's role in the account, capped by their credential's.
    pub role: Role,
    /// When the issuer acts with an API token, that token's expiry (`Some(None)`: it is
    /// permanent); `None` for any other credential.
    pub credential_expiry: Option<Option<DateTime<Utc>>>,
    pub live_tokens_in_account: u64,
    pub live_tokens_of_issuer: u64,
}

/// R15 and the credential ceilings: a token may be issued with at most its issuer's
/// effective role; with an expiry in the future or none; when minted with a token, expiring
/// no later than it (permanent only if it is); while the account and the issuer hold fewer
/// than the most live tokens they may.
pub fn check_grant(
    issuer: &IssuerFacts,
    grant: TokenGrant,
    limits: TokenLimits,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if grant.role > issuer.role {
        return Err(Refusal::TokenRoleAboveIssuer);
    }
    if grant.expires_at.is_some_and(|at| at <= now) {
        return Err(Refusal::ExpiryNotInFuture);
    }
    if let Some(Some(limit)) = issuer.credential_expiry
        && grant.expires_at.is_none_or(|at| at > limit)
    {
        return Err(Refusal::ExpiryAboveCredential { limit });
    }
    if issuer.live_tokens_in_account >= limits.per_account {
        return Err(Refusal::TooManyTokens {
            max: limits.per_account,
        });
    }
    if issuer.live_tokens_of_issuer >= limits.per_member {
        return Err(Refusal::TooManyTokensForMember {
            max: limits.per_member,
        });
    }
    Ok(())
}

/// The token roles a caller of this effective role may see: none above their own.
pub fn visible_roles(caller_role: Role) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|role| *role <= caller_role)
        .collect()
}

/// Whether the caller may see and delete the token: administrators every token of the
/// account, other members their own; and no credential a token above its own role.
pub fn may_see(caller_role: Role, caller_id: Uuid, issuer_id: Uuid, token_role: Role) -> bool {
    may_manage(caller_role, caller_id, issuer_id) && token_role <= caller_role
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
    fn grants_stay_within_the_issuers_role_expiry_and_caps() {
        let now = Utc::now();
        let (hour, day) = (now + TimeDelta::hours(1), now + TimeDelta::days(1));
        let issuer = |role, credential_expiry, in_account, of_issuer| IssuerFacts {
            role,
            credential_expiry,
            live_tokens_in_account: in_account,
            live_tokens_of_issuer: of_issuer,
        };
        let grant = |role, expires_at| TokenGrant { role, expires_at };
        use Role::*;
        let table = [
            // A JWT or operator (no credential expiry): any future expiry or none.
            (
                issuer(Engineers, None, 0, 0),
                grant(Engineers, None),
                Ok(()),
            ),
            (
                issuer(Engineers, None, 99, 49),
                grant(Users, Some(hour)),
                Ok(()),
            ),
            (
                issuer(Engineers, None, 0, 0),
                grant(Administrators, None),
                Err(Refusal::TokenRoleAboveIssuer),
            ),
            (
                issuer(Users, None, 0, 0),
                grant(Users, Some(now)),
                Err(Refusal::ExpiryNotInFuture),
            ),
            // A permanent token may mint permanent tokens.
            (issuer(Users, Some(None), 0, 0), grant(Users, None), Ok(())),
            // An expiring token mints tokens that expire no later than it.
            (
                issuer(Users, Some(Some(day)), 0, 0),
                grant(Users, Some(hour)),
                Ok(()),
            ),
            (
                issuer(Users, Some(Some(day)), 0, 0),
                grant(Users, Some(day)),
                Ok(()),
            ),
            (
                issuer(Users, Some(Some(hour)), 0, 0),
                grant(Users, None),
                Err(Refusal::ExpiryAboveCredential { limit: hour }),
            ),
            (
                issuer(Users, Some(Some(hour)), 0, 0),
                grant(Users, Some(day)),
                Err(Refusal::ExpiryAboveCredential { limit: hour }),
            ),
            // The account's cap, then the member's.
            (
                issuer(Administrators, None, 100, 0),
                grant(Users, None),
                Err(Refusal::TooManyTokens { max: 100 }),
            ),
            (
                issuer(Users, None, 60, 50),
                grant(Users, None),
                Err(Refusal::TooManyTokensForMember { max: 50 }),
            ),
        ];
        for (issuer, grant, expected) in table {
            assert_eq!(
                check_grant(&issuer, grant, TokenLimits::default(), now),
                expected,
                "{issuer:?} {grant:?}"
            );
        }
    }

    #[test]
    fn no_credential_sees_a_token_above_its_role() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        use Role::*;
        let table = [
            (Administrators, other, Administrators, true),
            (Administrators, other, Users, true),
            // An administrator calling with an Engineers token.
            (Engineers, me, Administrators, false),
            (Engineers, me, Engineers, true),
            (Engineers, other, Users, false),
            (Users, me, Users, true),
        ];
        for (caller_role, issuer, token_role, seen) in table {
            assert_eq!(
                may_see(caller_role, me, issuer, token_role),
                seen,
                "{caller_role:?} {token_role:?}"
            );
        }
        assert_eq!(visible_roles(Administrators), Role::ALL);
        assert_eq!(visible_roles(Users), [Users]);
        assert_eq!(visible_roles(Engineers).len(), 4);
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
