use std::fmt;

/// An email address, normalised: trimmed and lower-cased, at most 254 characters.
/// Two emails that differ only in case are the same user.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let normalised = raw.trim().to_lowercase();
        if normalised.is_empty() {
            return Err("is required".into());
        }
        if normalised.chars().count() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        let address = email_address::EmailAddress::parse_with_options(
            &normalised,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .map_err(|_| "is not a valid email address".to_string())?;
        // An address we can deliver to has a dotted domain (user@localhost is refused).
        if !address.domain().contains('.') {
            return Err("is not a valid email address".into());
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_is_trimmed_and_lower_cased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "ada.lovelace@example.com");
    }

    #[test]
    fn invalid_emails_are_refused() {
        for raw in [
            "",
            "   ",
            "plain",
            "@example.com",
            "ada@",
            "ada@@example.com",
            "ada lovelace@example.com",
            "Ada <ada@example.com>",
            "ada@localhost",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn an_email_longer_than_254_characters_is_refused() {
        let address = |first_label: usize| {
            let labels = ["b".repeat(first_label), "b".repeat(61), "b".repeat(61)];
            format!("{}@{}.com", "a".repeat(64), labels.join("."))
        };
        assert_eq!(address(61).len(), 254);
        assert!(Email::parse(&address(61)).is_ok());
        assert_eq!(address(62).len(), 255);
        assert_eq!(
            Email::parse(&address(62)).unwrap_err(),
            "must be at most 254 characters"
        );
    }
}
