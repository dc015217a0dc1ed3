//! A database outage, played by a TCP proxy between the service and PostgreSQL that the
//! test cuts and restores: calls during the cut fail with UNAVAILABLE and a plain message,
//! within the database timeout; once the database is back the service recovers by itself —
//! calls succeed, health is SERVING, the notifier delivers — with no restart.

use std::time::{Duration, Instant};

use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;
use usermgmt::{grpc::pb, notifier::Outcome};

use crate::health::{HealthWatch, through};
use crate::helpers::{TestApp, proxy::Proxy, reason, spawn_app_configured, with_token};

const UNAVAILABLE_MESSAGE: &str =
    "The service cannot reach its database right now; try again shortly";

async fn get_user(app: &TestApp, user_id: &str) -> Result<pb::User, Status> {
    app.users
        .clone()
        .get_user(with_token(
            &app.admin_token,
            pb::GetUserRequest {
                account_id: app.account_id.to_string(),
                user_id: user_id.into(),
            },
        ))
        .await
        .map(|response| response.into_inner().user.expect("a user"))
}

/// Fails the test unless `outcome` is the outage's UNAVAILABLE, answered within `limit`.
fn assert_unavailable<T: std::fmt::Debug>(
    call: &str,
    outcome: Result<T, Status>,
    took: Duration,
    limit: Duration,
) {
    let status = outcome.expect_err(call);
    assert_eq!(status.code(), Code::Unavailable, "{call}: {status:?}");
    assert_eq!(status.message(), UNAVAILABLE_MESSAGE, "{call}");
    assert_eq!(reason(&status), "DATABASE_UNAVAILABLE", "{call}");
    assert!(status.get_details_retry_info().is_some(), "{call}");
    assert!(took < limit, "{call} answered after {took:?}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn calls_during_an_outage_are_unavailable_and_the_service_recovers_by_itself() {
    let proxy = Proxy::to_test_postgres().await;
    let app = spawn_app_configured(true, through(&proxy)).await;
    let before = app
        .invite("Bob", "bob@example.com", pb::Role::Users)
        .await
        .unwrap();
    app.wait_deliveries(1, Outcome::Sent).await;
    let mut health = HealthWatch::open(app.addr, "").await;
    health.wait_for(ServingStatus::Serving).await;
    assert!(
        proxy.open_connections() > 0,
        "the app connects through the proxy"
    );

    proxy.cut();
    // The database timeout (1 s) bounds each call, well within the request deadline.
    let limit = Duration::from_secs(5);
    let started = Instant::now();
    let read = get_user(&app, &before.id).await;
    assert_unavailable("GetUser", read, started.elapsed(), limit);
    let started = Instant::now();
    let listed = app.list(&app.admin_token, app.list_request()).await;
    assert_unavailable("ListUsers", listed, started.elapsed(), limit);
    let started = Instant::now();
    let invited = app
        .invite("Carol", "carol@example.com", pb::Role::Users)
        .await;
    assert_unavailable("InviteUser", invited, started.elapsed(), limit);
    let started = Instant::now();
    let accepted = app
        .accept("not-a-real-secret", Some("a good password"))
        .await;
    assert_unavailable("AcceptInvitation", accepted, started.elapsed(), limit);
    health.wait_for(ServingStatus::NotServing).await;

    proxy.restore();
    health.wait_for(ServingStatus::Serving).await;
    // The pool replaced the connections the outage broke: the first calls succeed.
    let read = get_user(&app, &before.id)
        .await
        .expect("GetUser after recovery");
    assert_eq!(read.email, "bob@example.com");
    let dave = app
        .invite("Dave", "dave@example.com", pb::Role::Users)
        .await
        .expect("InviteUser after recovery");
    // The notifier resumed: the invitation made after recovery is delivered.
    let mails = app.mail.wait_for(2).await;
    assert!(
        mails
            .iter()
            .any(|mail| mail.to.contains("dave@example.com")),
        "{mails:?}"
    );
    assert_eq!(
        mails.len(),
        2,
        "nothing was sent for the call refused during the outage"
    );
    let listed = app
        .list(&app.admin_token, app.list_request())
        .await
        .unwrap();
    assert!(listed.users.iter().any(|user| user.id == dave.id));
    assert!(
        !listed
            .users
            .iter()
            .any(|user| user.email == "carol@example.com"),
        "the refused invitation left nothing behind"
    );
    app.stop().await;
}
