//! `Bearer <jwt>` callers. The keys: an HS256 shared secret, one RS256 / ES256 / EdDSA public
//! key, or an identity provider's JWKS endpoint (keys chosen by the token's `kid`, see
//! [`jwks`]). The algorithm always comes from the key, never from the token. `exp` is required
//! and `nbf` honoured, both against the service's clock with a small leeway; `iss` and `aud`
//! are required and must match when configured; `sub` is the user's id. The user's memberships
//! and roles still come from the database.

mod jwks;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use jsonwebtoken::{
    Algorithm, DecodingKey, Header, Validation, decode, decode_header, errors::ErrorKind,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;

use super::Error;
use crate::clock::SharedClock;
use crate::config::AuthSettings;
use jwks::{KeySet, VerifyingKey};

/// Clock skew tolerated between the token's issuer and this service.
const LEEWAY_SECONDS: i64 = 30;
/// Longer bearer tokens are refused unread.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The algorithms a JWKS key may verify.
const JWKS_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

const INVALID: &str = "The bearer token is invalid or expired";
const MALFORMED: &str = "The bearer token is not a well-formed JWT";
const UNKNOWN_KEY: &str = "The bearer token names no signing key (kid) this service knows";
const NOT_YET_VALID: &str = "The bearer token is not valid yet (nbf)";
const WRONG_ISSUER: &str = "The bearer token's issuer (iss) is not the one this service trusts";
const WRONG_AUDIENCE: &str = "The bearer token's audience (aud) is not this service";
const NOT_A_USER: &str = "The bearer token's subject (sub) is not a user id";

/// What a verified token vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub user_id: Uuid,
    /// The token's `jti`, if it has one: which credential acted.
    pub jti: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    nbf: Option<i64>,
    jti: Option<String>,
}

pub struct JwtVerifier {
    keys: Keys,
    rules: Rules,
}

enum Keys {
    /// The shared secret or the public key of the settings.
    One(Arc<VerifyingKey>),
    Jwks(Box<KeySet>),
}

/// What a token must claim besides a valid signature.
#[derive(Default)]
struct Rules {
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtVerifier {
    /// The verifier the settings ask for, if any. With a JWKS URL the key set is fetched now.
    pub async fn from_settings(
        settings: &AuthSettings,
        clock: SharedClock,
    ) -> Result<Option<Self>, String> {
        let secret = settings
            .jwt_secret
            .as_ref()
            .map(|secret| secret.expose_secret());
        let file = settings.jwt_public_key_file.as_deref();
        let url = settings.jwt_jwks_url.as_ref();
        if [secret.is_some(), file.is_some(), url.is_some()]
            .iter()
            .filter(|set| **set)
            .count()
            > 1
        {
            return Err(
                "set one of USERMGMT_JWT_SECRET, USERMGMT_JWT_PUBLIC_KEY_FILE and \
                 USERMGMT_JWT_JWKS_URL, not several"
                    .into(),
            );
        }
        let rules = Rules::from_settings(settings)?;
        let keys = match (secret, file, url) {
            (Some(secret), _, _) if secret.len() < 32 => {
                return Err("USERMGMT_JWT_SECRET must be at least 32 bytes".into());
            }
            (Some(secret), _, _) => Keys::One(Arc::new(VerifyingKey {
                key: DecodingKey::from_secret(secret.as_bytes()),
                algorithm: Algorithm::HS256,
            })),
            (None, Some(file), _) => {
                let pem = std::fs::read(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                Keys::One(Arc::new(public_key(&pem)?))
            }
            (None, None, Some(url)) => {
                Keys::Jwks(Box::new(KeySet::start(url.clone(), clock).await?))
            }
            (None, None, None) if rules.issuer.is_some() || rules.audience.is_some() => {
                return Err(
                    "USERMGMT_JWT_ISSUER and USERMGMT_JWT_AUDIENCE need a JWT key: \
                     USERMGMT_JWT_SECRET, USERMGMT_JWT_PUBLIC_KEY_FILE or USERMGMT_JWT_JWKS_URL"
                        .into(),
                );
            }
            (None, None, None) => return Ok(None),
        };
        Ok(Some(Self { keys, rules }))
    }

    /// An RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA) public key in PEM, with no issuer
    /// or audience required.
    pub fn from_public_pem(pem: &[u8]) -> Result<Self, String> {
        Ok(Self {
            keys: Keys::One(Arc::new(public_key(pem)?)),
            rules: Rules::default(),
        })
    }

    /// What the token vouches for at `now`. A malformed token is refused before any key is
    /// looked up (or fetched).
    pub async fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Verified, Error> {
        if !well_formed(token) {
            return Err(Error::Unauthenticated(MALFORMED));
        }
        let header = decode_header(token).map_err(|_| Error::Unauthenticated(MALFORMED))?;
        let key = match &self.keys {
            Keys::One(key) => key.clone(),
            Keys::Jwks(set) => {
                if !JWKS_ALGORITHMS.contains(&header.alg) {
                    return Err(Error::Unauthenticated(INVALID));
                }
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or(Error::Unauthenticated(UNKNOWN_KEY))?;
                set.key(kid)
                    .await
                    .ok_or(Error::Unauthenticated(UNKNOWN_KEY))?
            }
        };
        self.rules.check(&key, &header, token, now)
    }
}

/// Three non-empty base64url parts, and not absurdly long.
fn well_formed(token: &str) -> bool {
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    token.len() <= MAX_TOKEN_BYTES && {
        let parts: Vec<&str> = token.split('.').collect();
        parts.len() == 3 && parts.iter().all(|part| base64url(part))
    }
}

fn public_key(pem: &[u8]) -> Result<VerifyingKey, String> {
    let keys = [
        (DecodingKey::from_rsa_pem(pem), Algorithm::RS256),
        (DecodingKey::from_ec_pem(pem), Algorithm::ES256),
        (DecodingKey::from_ed_pem(pem), Algorithm::EdDSA),
    ];
    keys.into_iter()
        .find_map(|(key, algorithm)| {
            Some(VerifyingKey {
                key: key.ok()?,
                algorithm,
            })
        })
        .ok_or_else(|| "the JWT public key is not an RSA, EC P-256 or Ed25519 PEM key".into())
}

impl Rules {
    fn from_settings(settings: &AuthSettings) -> Result<Self, String> {
        let required = |value: &Option<String>, name: &str| match value.as_deref() {
            Some(value) if value.trim().is_empty() => Err(format!("{name} must not be empty")),
            value => Ok(value.map(String::from)),
        };
        Ok(Self {
            issuer: required(&settings.jwt_issuer, "USERMGMT_JWT_ISSUER")?,
            audience: required(&settings.jwt_audience, "USERMGMT_JWT_AUDIENCE")?,
        })
    }

    /// Verifies the token's signature with `key` (for the key's algorithm only) and its
    /// claims at `now`.
    fn check(
        &self,
        key: &VerifyingKey,
        header: &Header,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Verified, Error> {
        if header.alg != key.algorithm {
            return Err(Error::Unauthenticated(INVALID));
        }
        let mut validation = Validation::new(key.algorithm);
        // Time is checked below against the service's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Identity providers' tokens carry an audience even where none is configured.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let claims = decode::<Claims>(token, &key.key, &validation)
            .map_err(|error| {
                Error::Unauthenticated(match error.kind() {
                    ErrorKind::InvalidIssuer => WRONG_ISSUER,
                    ErrorKind::InvalidAudience => WRONG_AUDIENCE,
                    ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => WRONG_ISSUER,
                    ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => WRONG_AUDIENCE,
                    _ => INVALID,
                })
            })?
            .claims;
        let now = now.timestamp();
        if claims.exp.saturating_add(LEEWAY_SECONDS) <= now {
            return Err(Error::Unauthenticated(INVALID));
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf.saturating_sub(LEEWAY_SECONDS) > now)
        {
            return Err(Error::Unauthenticated(NOT_YET_VALID));
        }
        let user_id =
            Uuid::try_parse(&claims.sub).map_err(|_| Error::Unauthenticated(NOT_A_USER))?;
        Ok(Verified {
            user_id,
            jti: claims.jti,
        })
    }
}

#[cfg(test)]
mod tests;
