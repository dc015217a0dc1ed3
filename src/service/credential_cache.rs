//! Credentials screened before any database work (R16). A value that cannot be one of our
//! API tokens (`umk_` and 43 base64url characters) or a JWT (three base64url parts) is
//! refused at once; an API token found unknown a moment ago is refused again without a
//! lookup, so a flood of one junk token costs a hash and a map probe per call.
//!
//! Only secrets the store just failed to find are remembered, for [`UNKNOWN_FOR`] by the
//! service's clock. A token created later cannot be in the cache: its secret is drawn when it
//! is created, so nobody presented it before. Should 256 random bits ever be guessed
//! beforehand, the entry is gone [`UNKNOWN_FOR`] later.
//!
//! Tokens found live are remembered too, for [`LIVE_FOR`], for one decision only: InviteUser
//! looks the token up inside its write transaction when it was seen live lately, and before
//! that transaction otherwise, so that made-up tokens never hold a write transaction. The
//! transaction checks the token under the account's lock either way: being remembered live
//! grants nothing.

use chrono::{DateTime, TimeDelta, Utc};
use quick_cache::sync::Cache;

use super::Error;
use crate::domain::{ApiTokenSecret, SecretHash};

/// How many unknown API tokens are remembered at most; the least used go first.
const CAPACITY: usize = 4096;
/// How long an unknown API token is refused without asking the database.
pub const UNKNOWN_FOR: TimeDelta = TimeDelta::seconds(10);
/// How long an API token found live counts as seen live.
pub const LIVE_FOR: TimeDelta = TimeDelta::seconds(60);
/// 256 random bits in base64url without padding.
const SECRET_CHARS: usize = 43;

pub(super) const UNKNOWN_TOKEN: &str = "The API token is unknown, expired or deleted";

/// What a well-formed credential presented: an API token's hash, or something the database
/// is not asked about first (a JWT, or nothing at all).
pub(super) enum Screened {
    ApiKey(SecretHash),
    Other,
}

/// The API tokens recently found unknown, and those recently found live, by the hash of
/// their secret, with when they were found so.
pub(super) struct CredentialCache {
    unknown: Cache<String, DateTime<Utc>>,
    live: Cache<String, DateTime<Utc>>,
}

fn is_base64url(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether the text could be a secret of [`ApiTokenSecret::generate`].
fn is_api_token_shaped(secret: &str) -> bool {
    secret
        .strip_prefix(ApiTokenSecret::PREFIX)
        .is_some_and(|random| random.len() == SECRET_CHARS && is_base64url(random))
}

/// Whether the text is a compact JWS: header, payload and signature in base64url.
fn is_jwt_shaped(jwt: &str) -> bool {
    let mut parts = 0;
    jwt.split('.').all(|part| {
        parts += 1;
        is_base64url(part)
    }) && parts == 3
}

impl CredentialCache {
    pub fn new() -> Self {
        Self {
            unknown: Cache::new(CAPACITY),
            live: Cache::new(CAPACITY),
        }
    }

    /// Refuses a malformed credential, and an API token found unknown within
    /// [`UNKNOWN_FOR`]; otherwise says what was presented. Values it does not judge (no
    /// credential, another scheme) are left to the full check.
    pub fn screen(
        &self,
        authorization: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Screened, Error> {
        let Some((scheme, credential)) =
            authorization.and_then(|value| value.trim().split_once(' '))
        else {
            return Ok(Screened::Other);
        };
        let credential = credential.trim();
        if scheme.eq_ignore_ascii_case("apikey") {
            if !is_api_token_shaped(credential) {
                return Err(Error::Unauthenticated(
                    "The API token is malformed: API tokens read `umk_` and 43 characters",
                ));
            }
            let hash = SecretHash::of(credential);
            if let Some(found_unknown) = self.unknown.get(hash.as_str()) {
                if now - found_unknown < UNKNOWN_FOR {
                    return Err(Error::Unauthenticated(UNKNOWN_TOKEN));
                }
                self.unknown.remove(hash.as_str());
            }
            return Ok(Screened::ApiKey(hash));
        }
        if scheme.eq_ignore_ascii_case("bearer") && !is_jwt_shaped(credential) {
            return Err(Error::Unauthenticated(
                "The Bearer credential is not a JWT (three base64url parts)",
            ));
        }
        Ok(Screened::Other)
    }

    /// Remembers an API token the full check refused.
    pub fn remember_unknown(&self, presented: Screened, now: DateTime<Utc>) {
        if let Screened::ApiKey(hash) = presented {
            self.live.remove(hash.as_str());
            self.unknown.insert(hash.into_string(), now);
        }
    }

    /// Remembers an API token found live. A token found live within the last half of
    /// [`LIVE_FOR`] is left as it is: most calls only read the cache.
    pub fn remember_live(&self, hash: &SecretHash, now: DateTime<Utc>) {
        let fresh = self
            .live
            .get(hash.as_str())
            .is_some_and(|found_live| now - found_live < LIVE_FOR / 2);
        if !fresh {
            self.live.insert(hash.as_str().to_string(), now);
        }
    }

    /// Whether the API token was found live within [`LIVE_FOR`].
    pub fn seen_live(&self, hash: &SecretHash, now: DateTime<Utc>) -> bool {
        self.live
            .get(hash.as_str())
            .is_some_and(|found_live| now - found_live < LIVE_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_header(secret: &str) -> String {
        format!("APIKey {secret}")
    }

    #[test]
    fn only_values_shaped_like_our_tokens_and_jwts_pass() {
        let cache = CredentialCache::new();
        let now = Utc::now();
        let generated = ApiTokenSecret::generate();
        let well_formed = [
            token_header(generated.expose()),
            format!("apikey   {}  ", generated.expose()),
            format!("APIKey umk_{}", "-_aZ09".repeat(7) + "x"),
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln".into(),
            "Basic YWRtaW46YWRtaW4=".into(),
            "garbage".into(),
        ];
        for value in &well_formed {
            assert!(cache.screen(Some(value), now).is_ok(), "{value}");
        }
        assert!(cache.screen(None, now).is_ok());
        let malformed = [
            token_header("umk_short"),
            token_header(&format!("{}x", generated.expose())),
            token_header(&format!("umk_{}", "a".repeat(42) + "=")),
            token_header(&format!("umk_{}", "a".repeat(42) + "é")),
            token_header(&format!("xyz_{}", "a".repeat(43))),
            token_header(&format!("umk_{}", "a".repeat(43)).to_uppercase()),
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30".into(),
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.".into(),
            "Bearer a.b.c.d".into(),
            "Bearer a.b+.c".into(),
            "Bearer not a jwt".into(),
        ];
        for value in &malformed {
            assert!(
                matches!(
                    cache.screen(Some(value), now),
                    Err(Error::Unauthenticated(_))
                ),
                "{value}"
            );
        }
    }

    #[test]
    fn an_unknown_token_is_refused_from_memory_until_its_entry_expires() {
        let cache = CredentialCache::new();
        let now = Utc::now();
        let secret = ApiTokenSecret::generate();
        let header = token_header(secret.expose());
        let presented = cache.screen(Some(&header), now).unwrap();
        cache.remember_unknown(presented, now);
        let refused = |at| cache.screen(Some(&header), at).is_err();
        assert!(refused(now));
        assert!(refused(now + UNKNOWN_FOR - TimeDelta::milliseconds(1)));
        assert!(!refused(now + UNKNOWN_FOR));
        // The expired entry is gone: presenting it again asks the database again.
        assert!(!refused(now));
        let other = token_header(ApiTokenSecret::generate().expose());
        assert!(cache.screen(Some(&other), now).is_ok());
    }

    #[test]
    fn a_token_counts_as_seen_live_for_a_while_and_not_once_found_unknown() {
        let cache = CredentialCache::new();
        let now = Utc::now();
        let hash = ApiTokenSecret::generate().hash();
        assert!(!cache.seen_live(&hash, now));
        cache.remember_live(&hash, now);
        assert!(cache.seen_live(&hash, now + LIVE_FOR - TimeDelta::milliseconds(1)));
        assert!(!cache.seen_live(&hash, now + LIVE_FOR));
        // Found live again: within half the time the first finding stands, after it the
        // new one counts.
        cache.remember_live(&hash, now + LIVE_FOR / 4);
        assert!(!cache.seen_live(&hash, now + LIVE_FOR));
        cache.remember_live(&hash, now + LIVE_FOR / 2);
        assert!(cache.seen_live(&hash, now + LIVE_FOR));
        assert!(!cache.seen_live(&ApiTokenSecret::generate().hash(), now));
        cache.remember_unknown(Screened::ApiKey(hash.clone()), now);
        assert!(!cache.seen_live(&hash, now));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = CredentialCache::new();
        let now = Utc::now();
        for _ in 0..CAPACITY * 2 {
            let secret = ApiTokenSecret::generate();
            cache.remember_unknown(Screened::ApiKey(secret.hash()), now);
        }
        assert!(cache.unknown.len() <= CAPACITY);
        for _ in 0..CAPACITY * 2 {
            cache.remember_live(&ApiTokenSecret::generate().hash(), now);
        }
        assert!(cache.live.len() <= CAPACITY);
    }
}
