//! High-entropy secrets: invitation links and API tokens. Only their SHA-256 is stored; a
//! secret of 256 random bits needs no slow hash. The types have no `Debug`, so a secret
//! cannot reach a log by accident.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The hex SHA-256 of a secret: what the database stores and looks up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretHash(String);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        Self(hex::encode(Sha256::digest(secret.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn random_256_bits() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The secret of an invitation link: 256 bits from a CSPRNG, URL-safe.
pub struct InvitationSecret(String);

impl InvitationSecret {
    pub fn generate() -> Self {
        Self(random_256_bits())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

/// The secret of an API token: a recognisable prefix and 256 bits from a CSPRNG.
pub struct ApiTokenSecret(String);

impl ApiTokenSecret {
    pub const PREFIX: &'static str = "umk_";

    pub fn generate() -> Self {
        Self(format!("{}{}", Self::PREFIX, random_256_bits()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_distinct_url_safe_and_hashed() {
        let first = InvitationSecret::generate();
        let second = InvitationSecret::generate();
        assert_ne!(first.expose(), second.expose());
        assert_eq!(first.expose().len(), 43);
        assert!(
            first
                .expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(first.hash(), SecretHash::of(first.expose()));
        assert_eq!(first.hash().as_str().len(), 64);
    }

    #[test]
    fn api_token_secrets_carry_the_prefix() {
        assert!(ApiTokenSecret::generate().expose().starts_with("umk_"));
    }
}
