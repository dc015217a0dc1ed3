use std::fmt;

/// A person's display name: free text, trimmed, 1 to 255 characters, no control characters.
#[derive(Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("is required".into());
        }
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DisplayName({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_trimmed() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
    }

    #[test]
    fn blank_long_and_control_names_are_refused() {
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(256)).is_err());
        assert!(DisplayName::parse("Ada\u{0}").is_err());
        assert!(DisplayName::parse("A\nB").is_err());
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        assert!(DisplayName::parse(&"ж".repeat(255)).is_ok());
        assert!(DisplayName::parse(&"ж".repeat(256)).is_err());
    }
}
