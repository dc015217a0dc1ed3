use secrecy::{ExposeSecret, SecretString};

/// A new user's password: 8 to 128 characters. Held as a secret: no `Debug`, zeroed on drop.
pub struct Password(SecretString);

impl Password {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: String) -> Result<Self, String> {
        let length = raw.chars().count();
        let secret = SecretString::from(raw);
        if length < Self::MIN_LEN {
            return Err(format!("must be at least {} characters", Self::MIN_LEN));
        }
        if length > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        Ok(Self(secret))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_have_8_to_128_characters() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("ä".repeat(128)).is_ok());
        assert!(Password::parse("ä".repeat(129)).is_err());
    }
}
