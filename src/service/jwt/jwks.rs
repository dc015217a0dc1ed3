//! An identity provider's signing keys, fetched from its JWKS endpoint and chosen by `kid`.
//!
//! The set is fetched at start-up, again when a token names a `kid` the set does not hold, and
//! every [`REFRESH_INTERVAL`] (checked lazily, when a token is verified). Fetches are at least
//! [`REFETCH_INTERVAL`] apart by the service's clock, so a flood of made-up `kid`s costs at most
//! one fetch per interval. A failed fetch keeps the keys of the last good one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse},
};
use serde::Deserialize;
use url::Url;

use crate::clock::SharedClock;

/// The shortest time between two fetches of the set.
pub(super) const REFETCH_INTERVAL: TimeDelta = TimeDelta::seconds(30);
/// How old the set may grow before it is fetched again.
pub(super) const REFRESH_INTERVAL: TimeDelta = TimeDelta::minutes(10);
/// A JWK set larger than this is refused (real ones are a few KiB).
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// At most this many keys are kept from one set.
const MAX_KEYS: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A public key and the one algorithm it verifies.
pub(super) struct VerifyingKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

/// The usable signing keys of one JWK set, by `kid`.
#[derive(Default)]
pub(super) struct KeyRing(HashMap<String, Arc<VerifyingKey>>);

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

impl KeyRing {
    /// The usable signing keys of a JWK set document. Keys without a `kid`, encryption and
    /// symmetric keys, and keys for other algorithms are skipped; a set with no usable key is
    /// an error, so that a broken answer never replaces good keys.
    pub fn parse(document: &[u8]) -> Result<Self, String> {
        let document: Document =
            serde_json::from_slice(document).map_err(|e| format!("not a JWK set document: {e}"))?;
        let mut keys = HashMap::new();
        let usable = document
            .keys
            .into_iter()
            .filter_map(|jwk| serde_json::from_value::<Jwk>(jwk).ok())
            .filter_map(|jwk| usable(&jwk));
        for (kid, key) in usable.take(MAX_KEYS) {
            // The first key of a `kid` wins.
            keys.entry(kid).or_insert_with(|| Arc::new(key));
        }
        if keys.is_empty() {
            return Err("the JWK set holds no RS256, ES256 or EdDSA signing key with a kid".into());
        }
        Ok(Self(keys))
    }

    pub fn get(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        self.0.get(kid).cloned()
    }

    fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.0.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// The key's `kid` and verifying key, when it is a signing key this service accepts. The
/// algorithm comes from the key, never from the token.
fn usable(jwk: &Jwk) -> Option<(String, VerifyingKey)> {
    let kid = jwk.common.key_id.clone()?;
    let for_signatures = match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => true,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)) => false,
    };
    let verifies = jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|operations| operations.contains(&KeyOperations::Verify));
    if !for_signatures || !verifies {
        return None;
    }
    let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (AlgorithmParameters::OctetKeyPair(okp), None | Some(KeyAlgorithm::EdDSA))
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, VerifyingKey { key, algorithm }))
}

/// The keys of a JWKS endpoint, kept fresh.
pub(super) struct KeySet {
    url: Url,
    /// The URL as logged: without credentials.
    shown_url: String,
    client: reqwest::Client,
    clock: SharedClock,
    state: Mutex<State>,
    /// Held while fetching, so that concurrent callers share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    ring: Arc<KeyRing>,
    /// When the keys held were fetched.
    fetched_at: Option<DateTime<Utc>>,
    /// When a fetch last started, successful or not.
    attempted_at: Option<DateTime<Utc>>,
}

/// Whether `interval` has passed since `since`; a clock that went back counts as passed.
fn passed(since: Option<DateTime<Utc>>, interval: TimeDelta, now: DateTime<Utc>) -> bool {
    since.is_none_or(|since| now < since || now - since >= interval)
}

impl State {
    fn may_fetch(&self, now: DateTime<Utc>) -> bool {
        passed(self.attempted_at, REFETCH_INTERVAL, now)
    }

    fn refresh_due(&self, now: DateTime<Utc>) -> bool {
        passed(self.fetched_at, REFRESH_INTERVAL, now) && self.may_fetch(now)
    }
}

/// Whether the URL names this machine: `localhost`, 127.0.0.0/8 or ::1.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl KeySet {
    /// The key set at `url`, fetched once now. A failed first fetch is logged and retried when
    /// a token needs a key: the service starts, and API tokens keep working, while the
    /// identity provider is unreachable.
    pub async fn start(url: Url, clock: SharedClock) -> Result<Self, String> {
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "USERMGMT_JWT_JWKS_URL must be an http or https URL, not {}",
                url.scheme()
            ));
        }
        // Keys fetched in clear from elsewhere could be swapped on the way.
        if url.scheme() == "http" && !is_loopback(&url) {
            return Err("USERMGMT_JWT_JWKS_URL must use https unless it names this machine".into());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        let mut shown = url.clone();
        // Neither can fail on an http(s) URL with a host.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let set = Self {
            url,
            shown_url: shown.to_string(),
            client,
            clock,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        };
        set.refresh_if(|_, _| true).await;
        Ok(set)
    }

    /// The key named `kid`, fetching the set again if it is unknown or old (within limits).
    pub async fn key(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        let now = self.clock.now();
        let (known, refresh_due) = {
            let state = self.state();
            (state.ring.get(kid), state.refresh_due(now))
        };
        match known {
            Some(key) if !refresh_due => Some(key),
            // Old keys: one caller refreshes them while the others go on with the ones held.
            Some(key) => match self.fetching.try_lock() {
                Ok(_fetching) => {
                    self.refresh_if(State::refresh_due).await;
                    self.state().ring.get(kid)
                }
                Err(_) => Some(key),
            },
            // An unknown kid: wait for a fetch under way, or fetch if the last one is old
            // enough.
            None => {
                let _fetching = self.fetching.lock().await;
                self.refresh_if(State::may_fetch).await;
                self.state().ring.get(kid)
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fetches the set if `due` says so at the clock's now; the caller holds `fetching` (or
    /// is the only one with the set).
    async fn refresh_if(&self, due: impl Fn(&State, DateTime<Utc>) -> bool) {
        let now = self.clock.now();
        {
            let mut state = self.state();
            if !due(&state, now) {
                return;
            }
            state.attempted_at = Some(now);
        }
        match self.fetch().await {
            Ok(ring) => {
                tracing::info!(url = %self.shown_url, kids = ?ring.kids(), "fetched the JWT key set");
                let mut state = self.state();
                state.ring = Arc::new(ring);
                state.fetched_at = Some(now);
            }
            Err(error) => {
                tracing::warn!(url = %self.shown_url, %error, "cannot fetch the JWT key set; keeping the keys held");
            }
        }
    }

    async fn fetch(&self) -> Result<KeyRing, String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the endpoint answered {status}"));
        }
        let too_large = || format!("the answer is larger than {MAX_DOCUMENT_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut document = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if document.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            document.extend_from_slice(&chunk);
        }
        KeyRing::parse(&document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn keys_are_fetched_in_clear_only_from_this_machine() {
        let clock: SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
        for (url, loopback) in [
            ("http://localhost:1/jwks", true),
            ("http://127.0.0.1:1/jwks", true),
            ("http://[::1]:1/jwks", true),
            ("http://idp.example/jwks", false),
            ("http://10.0.0.1/jwks", false),
            ("https://idp.example/jwks", false),
        ] {
            let url = Url::parse(url).unwrap();
            assert_eq!(is_loopback(&url), loopback, "{url}");
        }
        let refused = KeySet::start(Url::parse("http://idp.example/jwks").unwrap(), clock)
            .await
            .err()
            .expect("refused");
        assert!(refused.contains("https"), "{refused}");
    }

    fn kids(document: serde_json::Value) -> Result<Vec<String>, String> {
        KeyRing::parse(document.to_string().as_bytes())
            .map(|ring| ring.kids().into_iter().map(String::from).collect())
    }

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn only_signing_keys_of_the_three_algorithms_with_a_kid_are_kept() {
        let document = json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "use": "sig", "alg": "RS256", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-no-alg", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-enc", "use": "enc", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-ps256", "alg": "PS256", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-wrap", "key_ops": ["wrapKey"], "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "use": "sig", "n": RSA_N, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": "c2VjcmV0"},
            {"kty": "unknown", "kid": "odd"},
            "not even an object",
        ]});
        assert_eq!(kids(document).unwrap(), ["rsa", "rsa-no-alg"]);
    }

    #[test]
    fn a_set_without_usable_keys_or_not_a_set_is_an_error() {
        for document in [
            json!({"keys": []}),
            json!({"keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]}),
            json!({"no": "keys"}),
            json!([1, 2, 3]),
        ] {
            assert!(kids(document.clone()).is_err(), "{document}");
        }
        assert!(KeyRing::parse(b"<html>").is_err());
    }

    #[test]
    fn fetches_are_spaced_and_the_set_refreshed_when_old() {
        let start = Utc::now();
        let at = |seconds: i64| start + TimeDelta::seconds(seconds);
        let state = State {
            ring: Arc::default(),
            fetched_at: Some(start),
            attempted_at: Some(start),
        };
        assert!(!state.may_fetch(at(29)));
        assert!(state.may_fetch(at(30)));
        assert!(state.may_fetch(at(-1)), "a clock that went back");
        assert!(!state.refresh_due(at(599)));
        assert!(state.refresh_due(at(600)));
        let failing = State {
            attempted_at: Some(at(600)),
            ..state
        };
        assert!(
            !failing.refresh_due(at(629)),
            "a failed refresh is spaced too"
        );
        assert!(failing.refresh_due(at(630)));
        assert!(State::default().refresh_due(start), "nothing fetched yet");
    }
}
