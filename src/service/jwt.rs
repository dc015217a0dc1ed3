//! `Bearer <jwt>` callers: HS256 with a shared secret, or RS256 / EdDSA with a public key.
//! `exp` is required and checked against the service's clock with a small leeway; `sub` is
//! the user's id. The user's memberships and roles still come from the database.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;

use super::Error;
use crate::config::AuthSettings;

/// Clock skew tolerated between the token's issuer and this service.
const LEEWAY_SECONDS: i64 = 30;

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
}

pub struct JwtVerifier {
    key: DecodingKey,
    algorithm: Algorithm,
}

const INVALID: &str = "The bearer token is invalid or expired";

impl JwtVerifier {
    /// The verifier the settings ask for, if any.
    pub fn from_settings(settings: &AuthSettings) -> Result<Option<Self>, String> {
        let secret = settings
            .jwt_secret
            .as_ref()
            .map(|secret| secret.expose_secret());
        match (secret, settings.jwt_public_key_file.as_deref()) {
            (Some(_), Some(_)) => {
                Err("set USERMGMT_JWT_SECRET or USERMGMT_JWT_PUBLIC_KEY_FILE, not both".into())
            }
            (Some(secret), None) if secret.len() < 32 => {
                Err("USERMGMT_JWT_SECRET must be at least 32 bytes".into())
            }
            (Some(secret), None) => Ok(Some(Self {
                key: DecodingKey::from_secret(secret.as_bytes()),
                algorithm: Algorithm::HS256,
            })),
            (None, Some(file)) => {
                let pem = std::fs::read(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                Self::from_public_pem(&pem).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// An RSA (RS256) or Ed25519 (EdDSA) public key in PEM.
    pub fn from_public_pem(pem: &[u8]) -> Result<Self, String> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self {
                key,
                algorithm: Algorithm::RS256,
            });
        }
        DecodingKey::from_ed_pem(pem)
            .map(|key| Self {
                key,
                algorithm: Algorithm::EdDSA,
            })
            .map_err(|_| "the JWT public key is neither an RSA nor an Ed25519 PEM key".into())
    }

    /// The user id the token vouches for at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Uuid, Error> {
        let header = decode_header(token).map_err(|_| Error::Unauthenticated(INVALID))?;
        if header.alg != self.algorithm {
            return Err(Error::Unauthenticated(INVALID));
        }
        let mut validation = Validation::new(self.algorithm);
        // Expiry is checked below against the service's clock, not the system's.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = decode::<Claims>(token, &self.key, &validation)
            .map_err(|_| Error::Unauthenticated(INVALID))?
            .claims;
        if claims.exp + LEEWAY_SECONDS <= now.timestamp() {
            return Err(Error::Unauthenticated(INVALID));
        }
        Uuid::try_parse(&claims.sub).map_err(|_| Error::Unauthenticated(INVALID))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use jsonwebtoken::{EncodingKey, Header, encode};
    use secrecy::SecretString;
    use serde_json::json;

    const SECRET: &str = "an HS256 secret of at least 32 bytes!";

    fn auth(secret: Option<&str>, public_key_file: Option<&str>) -> AuthSettings {
        AuthSettings {
            jwt_secret: secret.map(SecretString::from),
            jwt_public_key_file: public_key_file.map(PathBuf::from),
        }
    }

    fn hs256(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn a_signed_unexpired_token_names_its_user() {
        let verifier = JwtVerifier::from_settings(&auth(Some(SECRET), None))
            .unwrap()
            .unwrap();
        let now = Utc::now();
        let user = Uuid::now_v7();
        let token = hs256(
            json!({"sub": user.to_string(), "exp": now.timestamp() + 60}),
            SECRET,
        );
        assert_eq!(verifier.verify(&token, now).unwrap(), user);
    }

    #[test]
    fn expired_forged_and_incomplete_tokens_are_refused() {
        let verifier = JwtVerifier::from_settings(&auth(Some(SECRET), None))
            .unwrap()
            .unwrap();
        let now = Utc::now();
        let sub = Uuid::now_v7().to_string();
        let refused = [
            hs256(
                json!({"sub": sub, "exp": now.timestamp() - LEEWAY_SECONDS}),
                SECRET,
            ),
            hs256(
                json!({"sub": sub, "exp": now.timestamp() + 60}),
                "another secret of at least 32 bytes",
            ),
            hs256(json!({"sub": sub}), SECRET),
            hs256(
                json!({"sub": "not-a-uuid", "exp": now.timestamp() + 60}),
                SECRET,
            ),
            "not.a.jwt".to_string(),
        ];
        for token in refused {
            assert!(verifier.verify(&token, now).is_err(), "{token}");
        }
    }

    fn signed_with(algorithm: Algorithm, private_pem: &[u8], sub: &str, exp: i64) -> String {
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem).unwrap(),
            _ => EncodingKey::from_ed_pem(private_pem).unwrap(),
        };
        encode(
            &Header::new(algorithm),
            &json!({"sub": sub, "exp": exp}),
            &key,
        )
        .unwrap()
    }

    #[test]
    fn rs256_and_eddsa_tokens_verify_with_their_public_keys_only() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        let read = |name: &str| std::fs::read(format!("{fixtures}{name}")).unwrap();
        let now = Utc::now();
        let user = Uuid::now_v7();
        for (algorithm, private, public, other_public) in [
            (
                Algorithm::RS256,
                "jwt-rsa-private.pem",
                "jwt-rsa-public.pem",
                "jwt-ed25519-public.pem",
            ),
            (
                Algorithm::EdDSA,
                "jwt-ed25519-private.pem",
                "jwt-ed25519-public.pem",
                "jwt-rsa-public.pem",
            ),
        ] {
            let token = signed_with(
                algorithm,
                &read(private),
                &user.to_string(),
                now.timestamp() + 60,
            );
            let verifier = JwtVerifier::from_public_pem(&read(public)).unwrap();
            assert_eq!(verifier.verify(&token, now).unwrap(), user, "{algorithm:?}");
            let stranger = JwtVerifier::from_public_pem(&read(other_public)).unwrap();
            assert!(stranger.verify(&token, now).is_err(), "{algorithm:?}");
            let hs = hs256(
                json!({"sub": user.to_string(), "exp": now.timestamp() + 60}),
                SECRET,
            );
            assert!(verifier.verify(&hs, now).is_err(), "no algorithm switch");
        }
        assert!(JwtVerifier::from_public_pem(b"not a key").is_err());
    }

    #[test]
    fn a_short_secret_or_two_keys_are_configuration_errors() {
        assert!(JwtVerifier::from_settings(&auth(Some("short"), None)).is_err());
        assert!(JwtVerifier::from_settings(&auth(Some(SECRET), Some("k.pem"))).is_err());
        assert!(
            JwtVerifier::from_settings(&auth(None, None))
                .unwrap()
                .is_none()
        );
    }
}
