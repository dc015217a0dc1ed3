//! What became of a member's invitation email, and whether an email may still be sent.

use chrono::{DateTime, Utc};

/// Where the email of a member's current invitation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not handed to the mail server yet; it is being tried, or waits for its next attempt.
    Pending,
    /// Accepted by the mail server.
    Sent,
    /// Given up: the mail server refused it for good, or its link stopped working first.
    Failed,
}

/// The delivery of a member's current invitation email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvitationDelivery {
    pub state: DeliveryState,
    /// Attempts so far (claims of the email for sending).
    pub attempts: u32,
    /// The mail server's reply to the last failed attempt, or why the email was given up.
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl InvitationDelivery {
    /// The state of a stored email: sent, given up, or neither yet.
    pub fn state_of(sent: bool, given_up: bool) -> DeliveryState {
        match (sent, given_up) {
            (true, _) => DeliveryState::Sent,
            (false, true) => DeliveryState::Failed,
            (false, false) => DeliveryState::Pending,
        }
    }

    /// An email just queued.
    pub fn queued() -> Self {
        Self {
            state: DeliveryState::Pending,
            attempts: 0,
            last_error: None,
            last_attempt_at: None,
            sent_at: None,
        }
    }
}

/// Why an invitation email will never be sent: its link no longer works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkGone {
    Accepted,
    Expired,
    /// A resend replaced the invitation.
    Superseded,
    /// The membership was removed.
    Removed,
    /// The invitation is gone, and the email was not retired with it.
    Withdrawn,
}

impl LinkGone {
    /// What the email's `last_error` says.
    pub fn reason(self) -> &'static str {
        match self {
            LinkGone::Accepted => "invitation accepted",
            LinkGone::Expired => "invitation expired",
            LinkGone::Superseded => "superseded by a resent invitation",
            LinkGone::Removed => "membership removed",
            LinkGone::Withdrawn => "invitation withdrawn",
        }
    }
}

/// The invitation an email carries the link of, as stored now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkFacts {
    pub consumed: bool,
    pub expires_at: DateTime<Utc>,
}

/// Whether an email carrying the link of this invitation (`None`: no longer stored) may be
/// sent at `now`: only while the link works.
pub fn check_link(invitation: Option<LinkFacts>, now: DateTime<Utc>) -> Result<(), LinkGone> {
    match invitation {
        None => Err(LinkGone::Withdrawn),
        Some(LinkFacts { consumed: true, .. }) => Err(LinkGone::Accepted),
        Some(LinkFacts { expires_at, .. }) if expires_at <= now => Err(LinkGone::Expired),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn an_email_may_be_sent_only_while_its_link_works() {
        let now: DateTime<Utc> = "2026-11-30T12:00:00Z".parse().unwrap();
        let facts = |consumed, expires_in: TimeDelta| {
            Some(LinkFacts {
                consumed,
                expires_at: now + expires_in,
            })
        };
        let table = [
            (facts(false, TimeDelta::hours(1)), Ok(())),
            (facts(false, TimeDelta::zero()), Err(LinkGone::Expired)),
            (facts(false, TimeDelta::hours(-1)), Err(LinkGone::Expired)),
            (facts(true, TimeDelta::hours(1)), Err(LinkGone::Accepted)),
            (facts(true, TimeDelta::hours(-1)), Err(LinkGone::Accepted)),
            (None, Err(LinkGone::Withdrawn)),
        ];
        for (invitation, expected) in table {
            assert_eq!(check_link(invitation, now), expected, "{invitation:?}");
        }
    }

    #[test]
    fn a_sent_email_reads_sent_whatever_else_is_stored() {
        let table = [
            ((true, false), DeliveryState::Sent),
            ((true, true), DeliveryState::Sent),
            ((false, true), DeliveryState::Failed),
            ((false, false), DeliveryState::Pending),
        ];
        for ((sent, given_up), expected) in table {
            assert_eq!(InvitationDelivery::state_of(sent, given_up), expected);
        }
    }
}
