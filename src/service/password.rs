//! Password hashing: argon2id with OWASP's parameters (19 MiB, 2 iterations, 1 lane), off the
//! async runtime, with the number of hashes at once bounded so a burst cannot exhaust memory.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version, password_hash::SaltString};
use tokio::sync::Semaphore;

use super::Error;
use crate::domain::Password;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
}

impl PasswordHasher {
    pub fn new(concurrent: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
        }
    }

    pub async fn hash(&self, password: Password) -> Result<String, Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Internal("password hashing stopped"))?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|_| Error::Internal("password hashing failed"))?
    }
}

fn argon2() -> Result<Argon2<'static>, Error> {
    let params =
        Params::new(19 * 1024, 2, 1, None).map_err(|_| Error::Internal("argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &Password) -> Result<String, Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2()?
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| Error::Internal("password hashing failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHash, PasswordVerifier};

    #[tokio::test]
    async fn passwords_are_stored_as_verifiable_argon2id_hashes() {
        let hasher = PasswordHasher::new(1);
        let hash = hasher
            .hash(Password::parse("correct horse".into()).unwrap())
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("correct horse"));
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong horse", &parsed)
                .is_err()
        );
    }
}
