//! Invitations (R3–R9): which email an invitee gets, how often it may be resent, and the
//! outbox message that carries it to the notifier.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Language, Member, MemberStatus, Refusal};

/// A member's invitation is resent at most this often (R8).
pub const RESEND_INTERVAL: TimeDelta = TimeDelta::minutes(1);

/// How long invitation links work: the default, and the range a caller may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    default: TimeDelta,
    shortest: TimeDelta,
    longest: TimeDelta,
}

impl Lifetimes {
    /// The default applies when a caller asks for none; it may lie outside the range a
    /// caller may ask for (an operator may want shorter links by default).
    pub fn new(
        default: TimeDelta,
        shortest: TimeDelta,
        longest: TimeDelta,
    ) -> Result<Self, String> {
        if shortest > longest {
            return Err(format!(
                "the shortest requested invitation lifetime ({}s) is longer than the longest ({}s)",
                shortest.num_seconds(),
                longest.num_seconds()
            ));
        }
        Ok(Self {
            default,
            shortest,
            longest,
        })
    }

    /// The lifetime of a link: the one asked for, if it is in range, or the default.
    pub fn choose(&self, requested: Option<TimeDelta>) -> Result<TimeDelta, String> {
        match requested {
            None => Ok(self.default),
            Some(ttl) if ttl < self.shortest || ttl > self.longest => Err(format!(
                "must be between {} and {}",
                spoken(self.shortest),
                spoken(self.longest)
            )),
            Some(ttl) => Ok(ttl),
        }
    }
}

/// A lifetime as `90m`, `24h` or `30d`: the largest unit that divides it, down to seconds.
fn spoken(lifetime: TimeDelta) -> String {
    let seconds = lifetime.num_seconds();
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// How many invitations and resends an account may make in a sliding window; `None` in
/// [`InviteQuota::parse`] for `0`, which turns the quota off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InviteQuota {
    pub limit: u32,
    pub window: TimeDelta,
}

impl InviteQuota {
    /// `<count>/<window>`, e.g. `500/24h`; `0` for no quota. The window is 1 minute to
    /// 30 days.
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let raw = raw.trim();
        if raw == "0" {
            return Ok(None);
        }
        let (limit, window) = raw
            .split_once('/')
            .ok_or("must be `<count>/<window>`, e.g. `500/24h`, or `0` for none")?;
        let limit: u32 = limit
            .trim()
            .parse()
            .map_err(|_| "the count must be a whole number from 1")?;
        if limit == 0 {
            return Err("the count must be at least 1 (`0` alone turns the quota off)".into());
        }
        let window = humantime::parse_duration(window.trim()).map_err(|e| e.to_string())?;
        if window < std::time::Duration::from_secs(60)
            || window > std::time::Duration::from_secs(30 * 86_400)
        {
            return Err("the window must be between 1m and 30days".into());
        }
        let window = TimeDelta::from_std(window).map_err(|e| e.to_string())?;
        Ok(Some(Self { limit, window }))
    }

    /// Whether one more invitation fits. `pushing_out` is when the invitation that keeps the
    /// account at its limit was made: the `limit`-th newest before this one, if there are
    /// that many in the window; the account may invite again once it leaves the window.
    pub fn check(
        &self,
        pushing_out: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        match pushing_out {
            Some(made_at) if made_at > now - self.window => {
                let retry_after = (made_at + self.window - now)
                    .to_std()
                    .unwrap_or_default()
                    .max(std::time::Duration::from_secs(1));
                Err(Refusal::InviteQuotaExhausted {
                    limit: self.limit,
                    window: spoken(self.window),
                    retry_after,
                })
            }
            _ => Ok(()),
        }
    }
}

/// The page that accepts an invitation, with the link's secret as its `token` parameter.
pub fn accept_link(accept_url: &str, secret: &str) -> String {
    let separator = if accept_url.contains('?') { '&' } else { '?' };
    format!("{accept_url}{separator}token={secret}")
}

/// Which kind of email an invitation sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationKind {
    /// The invitee has no password yet: the link lets them create one.
    NewUser,
    /// The invitee already signs in: the email notifies them of the new account.
    ExistingUser,
}

impl InvitationKind {
    pub const ALL: [InvitationKind; 2] = [InvitationKind::NewUser, InvitationKind::ExistingUser];

    /// The kind's name, as stored and as the templates are named.
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationKind::NewUser => "new_user",
            InvitationKind::ExistingUser => "existing_user",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == stored)
    }
}

/// What the store knows of a user who already has the invited email.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExistingUser {
    pub user_id: Uuid,
    /// The user has set a password (accepted an invitation before).
    pub activated: bool,
    /// The user already has a membership of the inviting account, pending or accepted.
    pub member_of_account: bool,
}

/// R3–R5: an email of no user invites a new user; a user who never set a password is still
/// a new user to the email they get; anyone already in the account is refused.
pub fn invitation_kind(
    account_id: Uuid,
    existing: Option<ExistingUser>,
) -> Result<InvitationKind, Refusal> {
    match existing {
        None => Ok(InvitationKind::NewUser),
        Some(user) if user.member_of_account => Err(Refusal::AlreadyMember {
            account_id,
            user_id: user.user_id,
        }),
        Some(user) if user.activated => Ok(InvitationKind::ExistingUser),
        Some(_) => Ok(InvitationKind::NewUser),
    }
}

/// R8: only a pending (or expired) invitation is resent, at most once per interval.
/// `last_sent_at` is when the member's current invitation was made.
pub fn check_resend(
    member: &Member,
    last_sent_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if member.status == MemberStatus::Active {
        return Err(Refusal::InvitationAccepted {
            account_id: member.account_id,
            user_id: member.user_id,
        });
    }
    if let Some(sent) = last_sent_at {
        let since = now - sent;
        if since < RESEND_INTERVAL {
            return Err(Refusal::ResendTooSoon {
                user_id: member.user_id,
                retry_after: (RESEND_INTERVAL - since).to_std().unwrap_or_default(),
            });
        }
    }
    Ok(())
}

/// The outbox message of an invitation email: written with the change that invites, read
/// by the notifier. Its secret is erased once the email was sent or can no longer be.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationEmail {
    pub kind: InvitationKind,
    pub to: String,
    pub invitee_name: String,
    pub language: Language,
    pub account_name: String,
    pub inviter_name: String,
    pub expires_at: DateTime<Utc>,
    /// The link's secret; absent once the email was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl InvitationEmail {
    /// The message without its secret, as kept once it no longer needs one.
    pub fn without_secret(&self) -> Self {
        Self {
            secret: None,
            ..self.clone()
        }
    }
}

// By hand: the secret must never reach a log.
impl fmt::Debug for InvitationEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvitationEmail")
            .field("kind", &self.kind)
            .field("language", &self.language)
            .field("has_secret", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Role, test_support::member};

    #[test]
    fn the_invitee_decides_the_kind_of_email() {
        let account = Uuid::now_v7();
        let user_id = Uuid::now_v7();
        let user = |activated, member_of_account| {
            Some(ExistingUser {
                user_id,
                activated,
                member_of_account,
            })
        };
        let table = [
            (None, Ok(InvitationKind::NewUser)),
            (user(false, false), Ok(InvitationKind::NewUser)),
            (user(true, false), Ok(InvitationKind::ExistingUser)),
            (
                user(true, true),
                Err(Refusal::AlreadyMember {
                    account_id: account,
                    user_id,
                }),
            ),
            (
                user(false, true),
                Err(Refusal::AlreadyMember {
                    account_id: account,
                    user_id,
                }),
            ),
        ];
        for (existing, expected) in table {
            assert_eq!(invitation_kind(account, existing), expected, "{existing:?}");
        }
    }

    #[test]
    fn an_invitation_is_resent_once_a_minute_and_never_after_acceptance() {
        use MemberStatus::*;
        let now = Utc::now();
        let table = [
            // (status, seconds since the last invitation, refused with retry_after seconds)
            (Invited, None, None),
            (Invited, Some(60), None),
            (Expired, Some(3600), None),
            (Invited, Some(45), Some(15)),
            (Expired, Some(0), Some(60)),
        ];
        for (status, seconds_ago, retry_after) in table {
            let member = member(Role::Users, status);
            let last_sent = seconds_ago.map(|seconds| now - TimeDelta::seconds(seconds));
            let expected = match retry_after {
                None => Ok(()),
                Some(seconds) => Err(Refusal::ResendTooSoon {
                    user_id: member.user_id,
                    retry_after: std::time::Duration::from_secs(seconds),
                }),
            };
            assert_eq!(
                check_resend(&member, last_sent, now),
                expected,
                "{status:?} {seconds_ago:?}"
            );
        }
        let active = member(Role::Users, Active);
        for seconds_ago in [None, Some(10), Some(3600)] {
            let last_sent = seconds_ago.map(|seconds| now - TimeDelta::seconds(seconds));
            assert_eq!(
                check_resend(&active, last_sent, now),
                Err(Refusal::InvitationAccepted {
                    account_id: active.account_id,
                    user_id: active.user_id,
                })
            );
        }
    }

    #[test]
    fn a_message_stored_by_the_first_version_still_reads() {
        let stored = r#"{"kind":"new_user","to":"ada@example.com","invitee_name":"Ada","language":"ru","account_name":"Acme","inviter_name":"Alice","expires_at":"2026-11-29T09:00:00Z","secret":"s3cret"}"#;
        let message: InvitationEmail = serde_json::from_str(stored).unwrap();
        assert_eq!(message.kind, InvitationKind::NewUser);
        assert_eq!(message.language, Language::Ru);
        assert_eq!(message.secret.as_deref(), Some("s3cret"));
        let sent = r#"{"kind":"existing_user","to":"a@b.example","invitee_name":"A","language":"en","account_name":"X","inviter_name":"Y","expires_at":"2026-11-29T09:00:00Z"}"#;
        let message: InvitationEmail = serde_json::from_str(sent).unwrap();
        assert_eq!(message.secret, None);
    }

    #[test]
    fn the_outbox_message_keeps_its_stored_shape() {
        let email = InvitationEmail {
            kind: InvitationKind::ExistingUser,
            to: "ada@example.com".into(),
            invitee_name: "Ada".into(),
            language: Language::De,
            account_name: "Acme".into(),
            inviter_name: "Alice".into(),
            expires_at: "2026-11-29T09:00:00Z".parse().unwrap(),
            secret: Some("s3cret".into()),
        };
        let json: serde_json::Value = serde_json::to_value(&email).unwrap();
        assert_eq!(json["kind"], "existing_user");
        assert_eq!(json["language"], "de");
        assert_eq!(json["secret"], "s3cret");
        let erased = serde_json::to_string(&email.without_secret()).unwrap();
        assert!(!erased.contains("s3cret") && !erased.contains("secret"));
        let back: InvitationEmail = serde_json::from_str(&erased).unwrap();
        assert_eq!(back, email.without_secret());
        assert!(!format!("{email:?}").contains("s3cret"));
    }

    #[test]
    fn a_requested_lifetime_is_kept_in_range_and_the_default_fills_in() {
        let lifetimes = Lifetimes::new(
            TimeDelta::minutes(5),
            TimeDelta::hours(1),
            TimeDelta::days(7),
        )
        .unwrap();
        assert_eq!(lifetimes.choose(None), Ok(TimeDelta::minutes(5)));
        assert_eq!(
            lifetimes.choose(Some(TimeDelta::hours(1))),
            Ok(TimeDelta::hours(1))
        );
        assert_eq!(
            lifetimes.choose(Some(TimeDelta::days(7))),
            Ok(TimeDelta::days(7))
        );
        let refusal = Err("must be between 1h and 7d".to_string());
        assert_eq!(lifetimes.choose(Some(TimeDelta::minutes(59))), refusal);
        assert_eq!(
            lifetimes.choose(Some(TimeDelta::days(7) + TimeDelta::seconds(1))),
            refusal
        );
        assert!(
            Lifetimes::new(TimeDelta::hours(1), TimeDelta::days(2), TimeDelta::days(1)).is_err()
        );
    }

    #[test]
    fn the_accept_link_carries_the_secret_as_its_token_parameter() {
        assert_eq!(
            accept_link("https://console.example/accept", "abc"),
            "https://console.example/accept?token=abc"
        );
        assert_eq!(
            accept_link("https://console.example/accept?from=mail", "abc"),
            "https://console.example/accept?from=mail&token=abc"
        );
    }

    #[test]
    fn an_invite_quota_reads_count_and_window_or_zero_for_none() {
        assert_eq!(InviteQuota::parse("0"), Ok(None));
        assert_eq!(
            InviteQuota::parse("500/24h"),
            Ok(Some(InviteQuota {
                limit: 500,
                window: TimeDelta::hours(24)
            }))
        );
        for bad in [
            "", "500", "0/24h", "-1/24h", "x/24h", "5/soon", "5/1s", "5/31days",
        ] {
            assert!(InviteQuota::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_quota_refuses_until_the_invitation_holding_the_limit_leaves_the_window() {
        let quota = InviteQuota {
            limit: 2,
            window: TimeDelta::hours(1),
        };
        let now: DateTime<Utc> = "2026-11-30T12:00:00Z".parse().unwrap();
        assert_eq!(quota.check(None, now), Ok(()));
        assert_eq!(quota.check(Some(now - TimeDelta::hours(1)), now), Ok(()));
        let refused = quota.check(Some(now - TimeDelta::minutes(45)), now);
        assert_eq!(
            refused,
            Err(Refusal::InviteQuotaExhausted {
                limit: 2,
                window: "1h".into(),
                retry_after: std::time::Duration::from_secs(15 * 60),
            })
        );
    }
}
