use super::jwks::KeyRing;
use super::*;
use std::path::PathBuf;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, encode, jwk::Jwk};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::clock::SystemClock;

const SECRET: &str = "an HS256 secret of at least 32 bytes!";
const ISSUER: &str = "https://idp.example/";
const AUDIENCE: &str = "usermgmt";

fn auth(secret: Option<&str>, public_key_file: Option<&str>) -> AuthSettings {
    AuthSettings {
        jwt_secret: secret.map(SecretString::from),
        jwt_public_key_file: public_key_file.map(PathBuf::from),
        jwt_jwks_url: None,
        jwt_issuer: None,
        jwt_audience: None,
    }
}

async fn verifier(settings: &AuthSettings) -> Result<Option<JwtVerifier>, String> {
    JwtVerifier::from_settings(settings, Arc::new(SystemClock)).await
}

fn hs256(claims: Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    std::fs::read(format!("{fixtures}{name}")).unwrap()
}

/// The test keys: algorithm, private key, public key.
const KEYS: [(Algorithm, &str, &str); 3] = [
    (
        Algorithm::RS256,
        "jwt-rsa-private.pem",
        "jwt-rsa-public.pem",
    ),
    (
        Algorithm::ES256,
        "jwt-ec-p256-private.pem",
        "jwt-ec-p256-public.pem",
    ),
    (
        Algorithm::EdDSA,
        "jwt-ed25519-private.pem",
        "jwt-ed25519-public.pem",
    ),
];

fn encoding_key(algorithm: Algorithm, private_pem: &[u8]) -> EncodingKey {
    match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem).unwrap(),
        _ => EncodingKey::from_ed_pem(private_pem).unwrap(),
    }
}

fn signed(algorithm: Algorithm, kid: Option<&str>, private_pem: &[u8], claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(String::from);
    encode(&header, claims, &encoding_key(algorithm, private_pem)).unwrap()
}

fn claims(sub: Uuid, now: DateTime<Utc>) -> Value {
    json!({"sub": sub.to_string(), "exp": now.timestamp() + 60})
}

#[tokio::test]
async fn a_signed_unexpired_token_names_its_user_and_its_jti() {
    let verifier = verifier(&auth(Some(SECRET), None)).await.unwrap().unwrap();
    let now = Utc::now();
    let user = Uuid::now_v7();
    let token = hs256(
        json!({"sub": user.to_string(), "exp": now.timestamp() + 60, "jti": "t-1"}),
        SECRET,
    );
    let verified = verifier.verify(&token, now).await.unwrap();
    assert_eq!(
        verified,
        Verified {
            user_id: user,
            jti: Some("t-1".into())
        }
    );
    let without_jti = hs256(claims(user, now), SECRET);
    assert_eq!(verifier.verify(&without_jti, now).await.unwrap().jti, None);
}

#[tokio::test]
async fn expired_forged_incomplete_and_malformed_tokens_are_refused() {
    let verifier = verifier(&auth(Some(SECRET), None)).await.unwrap().unwrap();
    let now = Utc::now();
    let sub = Uuid::now_v7().to_string();
    let t = now.timestamp();
    let refused = [
        hs256(json!({"sub": sub, "exp": t - LEEWAY_SECONDS}), SECRET),
        hs256(
            json!({"sub": sub, "exp": t + 60}),
            "another secret of at least 32 bytes",
        ),
        hs256(json!({"sub": sub}), SECRET),
        hs256(json!({"sub": sub, "exp": "tomorrow"}), SECRET),
        hs256(json!({"exp": t + 60}), SECRET),
        hs256(json!({"sub": "not-a-uuid", "exp": t + 60}), SECRET),
        hs256(json!({"sub": sub, "exp": t + 60, "nbf": i64::MAX}), SECRET),
        hs256(
            json!({"sub": sub, "exp": i64::MIN, "nbf": i64::MIN}),
            SECRET,
        ),
        "not.a.jwt".to_string(),
        "a.b".to_string(),
        "a.b.c.d".to_string(),
        "a..c".to_string(),
        "a.b+/.c".to_string(),
        format!("{}.e30.x", "a".repeat(MAX_TOKEN_BYTES)),
        String::new(),
    ];
    for token in refused {
        assert!(verifier.verify(&token, now).await.is_err(), "{token}");
    }
    let far_future = hs256(json!({"sub": sub, "exp": i64::MAX}), SECRET);
    assert!(
        verifier.verify(&far_future, now).await.is_ok(),
        "no overflow"
    );
}

/// The claims' table: issuer and audience configured or not, claims right, wrong or missing.
#[tokio::test]
async fn issuer_audience_and_not_before_are_checked_as_configured() {
    let now = Utc::now();
    let t = now.timestamp();
    let sub = Uuid::now_v7().to_string();
    let with = |extra: Value| {
        let mut claims = json!({"sub": sub, "exp": t + 60});
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        hs256(claims, SECRET)
    };
    // What is configured: issuer and audience, or one of them, or neither.
    let both = (Some(ISSUER), Some(AUDIENCE));
    let iss = (Some(ISSUER), None);
    let aud = (None, Some(AUDIENCE));
    let none = (None, None);
    let (ok, leeway) = (Ok(()), LEEWAY_SECONDS);
    #[rustfmt::skip]
    let table = [
        ("right iss and aud", both, json!({"iss": ISSUER, "aud": AUDIENCE}), ok),
        ("aud array with ours", both, json!({"iss": ISSUER, "aud": ["x", AUDIENCE]}), ok),
        ("wrong iss", both, json!({"iss": "evil", "aud": AUDIENCE}), Err(WRONG_ISSUER)),
        ("missing iss", both, json!({"aud": AUDIENCE}), Err(WRONG_ISSUER)),
        ("wrong aud", both, json!({"iss": ISSUER, "aud": "other"}), Err(WRONG_AUDIENCE)),
        ("aud array without ours", both, json!({"iss": ISSUER, "aud": ["x"]}), Err(WRONG_AUDIENCE)),
        ("empty aud array", both, json!({"iss": ISSUER, "aud": []}), Err(WRONG_AUDIENCE)),
        ("missing aud", both, json!({"iss": ISSUER}), Err(WRONG_AUDIENCE)),
        ("aud unconfigured, claimed", iss, json!({"iss": ISSUER, "aud": "any"}), ok),
        ("iss unconfigured, claimed", aud, json!({"iss": "any", "aud": AUDIENCE}), ok),
        ("nothing configured or claimed", none, json!({}), ok),
        ("nothing configured, aud array", none, json!({"aud": ["x", "y"]}), ok),
        ("nbf now", none, json!({"nbf": t}), ok),
        ("nbf within the leeway", none, json!({"nbf": t + leeway}), ok),
        ("nbf beyond the leeway", none, json!({"nbf": t + leeway + 1}), Err(NOT_YET_VALID)),
        ("nbf in the past", none, json!({"nbf": t - 3600}), ok),
        ("nbf not a number", none, json!({"nbf": "soon"}), Err(INVALID)),
    ];
    for (case, (issuer, audience), extra, expected) in table {
        let mut settings = auth(Some(SECRET), None);
        settings.jwt_issuer = issuer.map(String::from);
        settings.jwt_audience = audience.map(String::from);
        let verifier = verifier(&settings).await.unwrap().unwrap();
        let outcome = verifier.verify(&with(extra), now).await;
        match (outcome, expected) {
            (Ok(_), Ok(())) => {}
            (Err(Error::Unauthenticated(message)), Err(expected)) => {
                assert_eq!(message, expected, "{case}")
            }
            (outcome, expected) => panic!("{case}: {outcome:?}, expected {expected:?}"),
        }
    }
}

#[tokio::test]
async fn public_key_tokens_verify_with_their_own_key_only() {
    let now = Utc::now();
    let user = Uuid::now_v7();
    for (algorithm, private, public) in KEYS {
        let token = signed(algorithm, None, &fixture(private), &claims(user, now));
        let verifier = JwtVerifier::from_public_pem(&fixture(public)).unwrap();
        let verified = verifier.verify(&token, now).await.unwrap();
        assert_eq!(verified.user_id, user, "{algorithm:?}");
        for (other, _, other_public) in KEYS {
            if other != algorithm {
                let stranger = JwtVerifier::from_public_pem(&fixture(other_public)).unwrap();
                assert!(stranger.verify(&token, now).await.is_err(), "{algorithm:?}");
            }
        }
        let hs = hs256(claims(user, now), SECRET);
        assert!(
            verifier.verify(&hs, now).await.is_err(),
            "no algorithm switch"
        );
    }
    assert!(JwtVerifier::from_public_pem(b"not a key").is_err());
}

/// A JWK set holding the three test keys' public halves, as `rsa`, `ec` and `ed`.
fn ring() -> KeyRing {
    let keys: Vec<Value> = KEYS
        .iter()
        .zip(["rsa", "ec", "ed"])
        .map(|((algorithm, private, _), kid)| {
            let mut jwk =
                Jwk::from_encoding_key(&encoding_key(*algorithm, &fixture(private)), *algorithm)
                    .unwrap();
            jwk.common.key_id = Some(kid.into());
            serde_json::to_value(jwk).unwrap()
        })
        .collect();
    KeyRing::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

/// Verifies `token` as a JWKS verifier does, the key chosen from `ring` by the token's kid.
fn verify_with(ring: &KeyRing, token: &str, now: DateTime<Utc>) -> Result<Verified, Error> {
    let header = decode_header(token).map_err(|_| Error::Unauthenticated(MALFORMED))?;
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| ring.get(kid))
        .ok_or(Error::Unauthenticated(UNKNOWN_KEY))?;
    Rules::default().check(&key, &header, token, now)
}

#[test]
fn a_jwks_key_is_chosen_by_kid_and_verifies_its_own_algorithm_only() {
    let ring = ring();
    let now = Utc::now();
    let user = Uuid::now_v7();
    for ((algorithm, private, _), kid) in KEYS.iter().zip(["rsa", "ec", "ed"]) {
        let token = signed(*algorithm, Some(kid), &fixture(private), &claims(user, now));
        assert_eq!(verify_with(&ring, &token, now).unwrap().user_id, user);
        for other_kid in ["rsa", "ec", "ed"].into_iter().filter(|k| *k != kid) {
            let mislabelled = signed(
                *algorithm,
                Some(other_kid),
                &fixture(private),
                &claims(user, now),
            );
            assert!(
                verify_with(&ring, &mislabelled, now).is_err(),
                "{kid} as {other_kid}"
            );
        }
        let unknown = signed(
            *algorithm,
            Some("gone"),
            &fixture(private),
            &claims(user, now),
        );
        assert!(verify_with(&ring, &unknown, now).is_err());
    }
}

#[test]
fn an_hs256_token_signed_with_a_public_key_is_refused() {
    let ring = ring();
    let now = Utc::now();
    let user = Uuid::now_v7();
    let rsa_jwk = serde_json::to_string(
        &Jwk::from_encoding_key(
            &encoding_key(Algorithm::RS256, &fixture("jwt-rsa-private.pem")),
            Algorithm::RS256,
        )
        .unwrap(),
    )
    .unwrap();
    for public_bytes in [fixture("jwt-rsa-public.pem"), rsa_jwk.into_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa".into());
        let token = encode(
            &header,
            &claims(user, now),
            &EncodingKey::from_secret(&public_bytes),
        )
        .unwrap();
        assert!(verify_with(&ring, &token, now).is_err());
    }
}

#[tokio::test]
async fn an_unsigned_token_is_refused() {
    let now = Utc::now();
    let user = Uuid::now_v7();
    let part = |value: Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let payload = part(claims(user, now));
    let verifier = verifier(&auth(Some(SECRET), None)).await.unwrap().unwrap();
    for alg in ["none", "None", "NONE"] {
        let header = part(json!({"alg": alg, "kid": "rsa"}));
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            assert!(verifier.verify(&token, now).await.is_err(), "{token}");
            assert!(verify_with(&ring(), &token, now).is_err(), "{token}");
        }
    }
}

#[tokio::test]
async fn conflicting_or_incomplete_settings_are_configuration_errors() {
    assert!(verifier(&auth(Some("short"), None)).await.is_err());
    assert!(verifier(&auth(Some(SECRET), Some("k.pem"))).await.is_err());
    let mut with_jwks = auth(None, Some("k.pem"));
    with_jwks.jwt_jwks_url = Some("https://idp.example/jwks".parse().unwrap());
    assert!(verifier(&with_jwks).await.is_err());
    let mut not_http = auth(None, None);
    not_http.jwt_jwks_url = Some("file:///etc/jwks.json".parse().unwrap());
    assert!(verifier(&not_http).await.is_err());
    let mut issuer_alone = auth(None, None);
    issuer_alone.jwt_issuer = Some(ISSUER.into());
    assert!(verifier(&issuer_alone).await.is_err());
    let mut empty_audience = auth(Some(SECRET), None);
    empty_audience.jwt_audience = Some(" ".into());
    assert!(verifier(&empty_audience).await.is_err());
    assert!(verifier(&auth(None, None)).await.unwrap().is_none());
}
