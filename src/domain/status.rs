use chrono::{DateTime, Utc};

/// Where a member stands in an account, as a reader sees it at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberStatus {
    Invited,
    Active,
    Expired,
}

impl MemberStatus {
    /// An accepted membership is active; a pending one reads EXPIRED once its link expired.
    pub fn at(
        accepted: bool,
        invitation_expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        if accepted {
            return MemberStatus::Active;
        }
        match invitation_expires_at {
            Some(expires_at) if expires_at > now => MemberStatus::Invited,
            _ => MemberStatus::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn an_invitation_expires_at_its_expiry_time() {
        let now = Utc::now();
        let later = now + TimeDelta::hours(24);
        assert_eq!(
            MemberStatus::at(false, Some(later), now),
            MemberStatus::Invited
        );
        assert_eq!(
            MemberStatus::at(false, Some(later), later),
            MemberStatus::Expired
        );
        assert_eq!(MemberStatus::at(true, None, later), MemberStatus::Active);
    }
}
