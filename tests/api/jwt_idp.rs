//! `Bearer` JWTs from an identity provider: keys from its JWKS endpoint (a real HTTP server in
//! the test), chosen by `kid`, fetched again on rotation, with issuer and audience required.

use chrono::TimeDelta;
use serde_json::{Value, json};
use tonic::{Code, Request};
use usermgmt::{config::AuthSettings, grpc::pb};

use crate::helpers::{
    TestApp,
    jwks::{JwksServer, SigningKey},
    spawn_app_with_auth, with_bearer,
};

const ISSUER: &str = "https://idp.example/";
const AUDIENCE: &str = "usermgmt";

fn idp_settings(jwks: &JwksServer) -> AuthSettings {
    AuthSettings {
        jwt_secret: None,
        jwt_public_key_file: None,
        jwt_jwks_url: Some(jwks.url()),
        jwt_issuer: Some(ISSUER.into()),
        jwt_audience: Some(AUDIENCE.into()),
    }
}

/// The claims an identity provider puts in a token for the app's administrator, valid now by
/// the app's clock.
fn claims(app: &TestApp) -> Value {
    let now = app.clock_now().timestamp();
    json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, "another-api"],
        "sub": app.admin_id.to_string(),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "idp-token-1",
    })
}

/// GetUser of the administrator with `token` as the bearer.
async fn get_user(app: &TestApp, token: &str) -> Result<pb::User, Code> {
    app.users
        .clone()
        .get_user(with_bearer(
            token,
            pb::GetUserRequest {
                account_id: app.account_id.to_string(),
                user_id: app.admin_id.to_string(),
            },
        ))
        .await
        .map(|response| response.into_inner().user.expect("a user"))
        .map_err(|status| status.code())
}

#[tokio::test]
async fn a_token_from_the_identity_provider_calls_get_user() {
    let (rsa, ec, ed) = (
        SigningKey::rsa("rsa-1"),
        SigningKey::ec("ec-1"),
        SigningKey::ed("ed-1"),
    );
    let jwks = JwksServer::start(&[&rsa, &ec, &ed]).await;
    let app = spawn_app_with_auth(idp_settings(&jwks)).await;
    assert_eq!(jwks.requests(), 1, "the key set is fetched at start-up");

    for key in [&rsa, &ec, &ed] {
        let user = get_user(&app, &key.sign(&claims(&app))).await.unwrap();
        assert_eq!(user.id, app.admin_id.to_string(), "{}", key.kid);
    }
    let mut single_audience = claims(&app);
    single_audience["aud"] = json!(AUDIENCE);
    assert!(get_user(&app, &ec.sign(&single_audience)).await.is_ok());
    assert_eq!(jwks.requests(), 1, "known keys need no fetch");
}

#[tokio::test]
async fn tokens_for_another_service_issuer_or_time_are_unauthenticated() {
    let key = SigningKey::ec("ec-1");
    let jwks = JwksServer::start(&[&key]).await;
    let app = spawn_app_with_auth(idp_settings(&jwks)).await;
    let now = app.clock_now().timestamp();
    let with = |name: &str, value: Value| {
        let mut claims = claims(&app);
        claims[name] = value;
        claims
    };
    let without = |name: &str| {
        let mut claims = claims(&app);
        claims.as_object_mut().unwrap().remove(name);
        claims
    };
    let refused = [
        ("another audience", with("aud", json!("another-api"))),
        ("no audience", without("aud")),
        (
            "another issuer",
            with("iss", json!("https://evil.example/")),
        ),
        ("no issuer", without("iss")),
        ("not valid for two minutes", with("nbf", json!(now + 120))),
        ("expired a minute ago", with("exp", json!(now - 60))),
        ("no expiry", without("exp")),
    ];
    for (case, claims) in refused {
        let code = get_user(&app, &key.sign(&claims)).await.unwrap_err();
        assert_eq!(code, Code::Unauthenticated, "{case}");
    }
    let within_leeway = with("nbf", json!(now + 20));
    assert!(get_user(&app, &key.sign(&within_leeway)).await.is_ok());

    // The same token once the app's clock reaches its nbf.
    let later = key.sign(&with("nbf", json!(now + 120)));
    app.advance(TimeDelta::seconds(100));
    assert!(get_user(&app, &later).await.is_ok());
}

#[tokio::test]
async fn a_rotated_key_works_after_the_refetch_and_a_removed_one_stops_after_the_refresh() {
    let old = SigningKey::rsa("2026-old");
    let new = SigningKey::ed("2026-new");
    let jwks = JwksServer::start(&[&old]).await;
    let app = spawn_app_with_auth(idp_settings(&jwks)).await;
    assert!(get_user(&app, &old.sign(&claims(&app))).await.is_ok());

    // The provider publishes its next key and starts signing with it.
    jwks.serve(&[&old, &new]);
    app.advance(TimeDelta::seconds(31));
    assert!(get_user(&app, &new.sign(&claims(&app))).await.is_ok());
    assert_eq!(jwks.requests(), 2, "the unknown kid fetched the set again");
    assert!(get_user(&app, &old.sign(&claims(&app))).await.is_ok());

    // It retires the old key: tokens naming it work until the set is refreshed.
    jwks.serve(&[&new]);
    app.advance(TimeDelta::minutes(5));
    assert!(get_user(&app, &old.sign(&claims(&app))).await.is_ok());
    assert_eq!(jwks.requests(), 2);
    app.advance(TimeDelta::minutes(5));
    let code = get_user(&app, &old.sign(&claims(&app))).await.unwrap_err();
    assert_eq!(code, Code::Unauthenticated);
    assert_eq!(
        jwks.requests(),
        3,
        "the set was refreshed after ten minutes"
    );
    assert!(get_user(&app, &new.sign(&claims(&app))).await.is_ok());
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_set_at_most_once_per_interval() {
    let key = SigningKey::ec("ec-1");
    let jwks = JwksServer::start(&[&key]).await;
    let app = spawn_app_with_auth(idp_settings(&jwks)).await;
    // 6 calls at once: within the server's calls per connection, so each one reaches the
    // key set.
    let flood = |round: u32| {
        let claims = claims(&app);
        let key = &key;
        let app = &app;
        futures::future::join_all((0..6).map(move |i| {
            let token = key.sign_as(&format!("made-up-{round}-{i}"), &claims);
            async move { get_user(app, &token).await }
        }))
    };

    for outcome in flood(0).await {
        assert_eq!(outcome.unwrap_err(), Code::Unauthenticated);
    }
    assert_eq!(
        jwks.requests(),
        1,
        "within 30 s of the start-up fetch: none"
    );

    app.advance(TimeDelta::seconds(30));
    for outcome in flood(1).await {
        assert_eq!(outcome.unwrap_err(), Code::Unauthenticated);
    }
    assert_eq!(jwks.requests(), 2, "one fetch for the whole flood");
    app.advance(TimeDelta::seconds(29));
    flood(2).await;
    assert_eq!(jwks.requests(), 2);

    app.advance(TimeDelta::seconds(1));
    flood(3).await;
    assert_eq!(jwks.requests(), 3);
    assert!(get_user(&app, &key.sign(&claims(&app))).await.is_ok());
}

#[tokio::test]
async fn malformed_or_foreign_bearer_tokens_are_refused_without_a_fetch() {
    let key = SigningKey::rsa("rsa-1");
    let jwks = JwksServer::start(&[&key]).await;
    let app = spawn_app_with_auth(idp_settings(&jwks)).await;
    app.advance(TimeDelta::minutes(11));
    let mut hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs256.kid = Some("unknown".into());
    let hs256 = jsonwebtoken::encode(
        &hs256,
        &claims(&app),
        &jsonwebtoken::EncodingKey::from_secret(b"a secret of at least 32 bytes, yes"),
    )
    .unwrap();
    let signed = key.sign(&claims(&app));
    let (header, rest) = signed.split_once('.').unwrap();
    let long = format!("{header}.{}.{rest}", "A".repeat(9 * 1024));
    for token in [
        "not-a-jwt".to_string(),
        "a.b".to_string(),
        "a.b.c.d".to_string(),
        format!("{signed}="),
        long,
        hs256,
    ] {
        let code = get_user(&app, &token).await.unwrap_err();
        assert_eq!(code, Code::Unauthenticated, "{token:.40}");
    }
    assert_eq!(jwks.requests(), 1, "only the start-up fetch");
    let mut request = Request::new(pb::GetUserRequest::default());
    request.metadata_mut().insert(
        "authorization",
        "Bearer eyJhbGciOiJub25lIn0.e30.".parse().unwrap(),
    );
    let status = app.users.clone().get_user(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(jwks.requests(), 1);
}

#[tokio::test]
async fn an_unreachable_provider_keeps_the_last_good_keys_and_is_retried() {
    let key = SigningKey::ed("ed-1");
    let next = SigningKey::ec("ec-2");
    let jwks = JwksServer::start(&[&key]).await;
    jwks.set_down(true);
    let app = spawn_app_with_auth(idp_settings(&jwks)).await;
    assert_eq!(
        jwks.requests(),
        1,
        "the start-up fetch failed; the app serves anyway"
    );
    let code = get_user(&app, &key.sign(&claims(&app))).await.unwrap_err();
    assert_eq!(code, Code::Unauthenticated);

    jwks.set_down(false);
    app.advance(TimeDelta::seconds(30));
    assert!(get_user(&app, &key.sign(&claims(&app))).await.is_ok());
    assert_eq!(jwks.requests(), 2);

    // Down again when the set is due for its refresh: the keys held keep working.
    jwks.set_down(true);
    jwks.serve(&[&next]);
    app.advance(TimeDelta::minutes(10));
    assert!(get_user(&app, &key.sign(&claims(&app))).await.is_ok());
    assert_eq!(jwks.requests(), 3);
    let code = get_user(&app, &next.sign(&claims(&app))).await.unwrap_err();
    assert_eq!(code, Code::Unauthenticated);
    assert_eq!(jwks.requests(), 3, "no second fetch within 30 s");
}
