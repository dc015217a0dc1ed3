//! `grpc.health.v1`: SERVING for the server and each service while the database answers,
//! NOT_SERVING within seconds of it becoming unreachable and SERVING again when it returns,
//! NOT_SERVING as soon as shutdown begins — before the calls in flight drain — and
//! `usermgmt healthcheck` following it.
//!
//! On SQLite the database is a file the service holds open: short of a failing disk there is
//! no honest way to take it away, so the database-outage flips run on PostgreSQL, through a
//! proxy the test cuts.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
use secrecy::ExposeSecret;
use tonic::{Streaming, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient,
};
use usermgmt::{config::Settings, grpc::pb, health::SERVICES};

use crate::helpers::{
    TestApp, invite_request, proxy::Proxy, spawn_app, spawn_app_configured, with_token,
};

/// How long a test waits for a status before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

async fn health_client(addr: SocketAddr) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the server");
    HealthClient::new(channel)
}

/// The status `Check` reports for `service`.
pub async fn check(addr: SocketAddr, service: &str) -> ServingStatus {
    health_client(addr)
        .await
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("a health answer")
        .into_inner()
        .status()
}

/// An open `Watch` stream on one name.
pub struct HealthWatch {
    service: String,
    stream: Streaming<HealthCheckResponse>,
}

impl HealthWatch {
    pub async fn open(addr: SocketAddr, service: &str) -> HealthWatch {
        let stream = health_client(addr)
            .await
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("a health stream")
            .into_inner();
        HealthWatch {
            service: service.into(),
            stream,
        }
    }

    /// The next status sent, or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<ServingStatus> {
        let next = tokio::time::timeout(PATIENCE, self.stream.message())
            .await
            .unwrap_or_else(|_| panic!("{:?}: no health update in time", self.service));
        next.expect("the health stream does not fail")
            .map(|response| response.status())
    }

    /// Waits until the stream reports `wanted`, skipping other statuses.
    pub async fn wait_for(&mut self, wanted: ServingStatus) {
        loop {
            match self.next().await {
                Some(status) if status == wanted => return,
                Some(_) => {}
                None => panic!("{:?}: the stream ended before {wanted:?}", self.service),
            }
        }
    }
}

/// One watch per name the health service answers for.
async fn watch_every_service(addr: SocketAddr) -> Vec<HealthWatch> {
    let mut watches = Vec::new();
    for service in SERVICES {
        watches.push(HealthWatch::open(addr, service).await);
    }
    watches
}

/// Exit status of `usermgmt healthcheck` pointed at `addr`.
async fn healthcheck(addr: SocketAddr) -> std::process::ExitStatus {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_usermgmt"))
        .arg("healthcheck")
        .arg(format!("--listen-addr={addr}"))
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .status()
        .await
        .expect("run usermgmt healthcheck")
}

#[tokio::test]
async fn the_server_and_every_service_report_serving() {
    let app = spawn_app().await;
    assert_eq!(
        SERVICES,
        ["", "usermgmt.v1.UserManagement", "usermgmt.v1.ApiTokens"]
    );
    for service in SERVICES {
        assert_eq!(
            check(app.addr, service).await,
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    assert!(healthcheck(app.addr).await.success());
    app.stop().await;
}

#[tokio::test]
async fn shutdown_turns_every_watcher_not_serving_then_ends_its_stream() {
    let app = spawn_app().await;
    let addr = app.addr;
    let mut watches = watch_every_service(addr).await;
    for watch in &mut watches {
        assert_eq!(watch.next().await, Some(ServingStatus::Serving));
    }
    // The watches are calls in flight: they hear NOT_SERVING from the draining server, and
    // then end rather than hold its shutdown.
    let stopping = tokio::spawn(app.stop());
    for watch in &mut watches {
        assert_eq!(watch.next().await, Some(ServingStatus::NotServing));
        assert_eq!(watch.next().await, None, "{:?} ends", watch.service);
    }
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("open health watches do not hold the shutdown")
        .expect("the server stops cleanly");
    assert!(
        !healthcheck(addr).await.success(),
        "no server, no health: healthcheck fails"
    );
}

/// Settings of an app whose database is reached through `proxy`: a connection is waited for
/// one second at most, health has its default interval and timeout.
pub fn through(proxy: &Proxy) -> impl FnOnce(&mut Settings) + '_ {
    |settings| {
        let routed = proxy.route(settings.database.url.expose_secret());
        settings.database.url = routed.into();
        settings.database.timeout = Duration::from_secs(1);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn health_follows_the_database_both_ways_and_healthcheck_follows_health() {
    let proxy = Proxy::to_test_postgres().await;
    let app = spawn_app_configured(false, through(&proxy)).await;
    let mut watches = watch_every_service(app.addr).await;
    for watch in &mut watches {
        watch.wait_for(ServingStatus::Serving).await;
    }
    assert!(healthcheck(app.addr).await.success());

    let cut = Instant::now();
    proxy.cut();
    for watch in &mut watches {
        watch.wait_for(ServingStatus::NotServing).await;
    }
    let noticed = cut.elapsed();
    // Defaults: a ping a second, two seconds for its answer.
    assert!(
        noticed < Duration::from_secs(5),
        "noticed after {noticed:?}"
    );
    for service in SERVICES {
        assert_eq!(check(app.addr, service).await, ServingStatus::NotServing);
    }
    assert!(!healthcheck(app.addr).await.success());

    proxy.restore();
    for watch in &mut watches {
        watch.wait_for(ServingStatus::Serving).await;
    }
    for service in SERVICES {
        assert_eq!(check(app.addr, service).await, ServingStatus::Serving);
    }
    assert!(healthcheck(app.addr).await.success());
    app.stop().await;
}

/// Holds the account's row locked in a transaction of the test's own, so that a write of
/// the account waits, in flight, until the transaction ends.
async fn lock_account(app: &TestApp) -> sea_orm::DatabaseTransaction {
    let txn = app.db.begin().await.unwrap();
    txn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
        [app.account_id.into()],
    ))
    .await
    .unwrap();
    txn
}

/// Waits until `n` sessions of the app's database wait for a lock: the held calls arrived.
pub(crate) async fn wait_for_blocked_calls(app: &TestApp, n: i64) {
    wait_for_sessions(
        app,
        "wait_event_type = 'Lock'",
        |blocked| blocked >= n,
        "the calls never reached the lock",
    )
    .await;
}

/// Waits until the number of the database's other sessions on the test's database that
/// match `condition` (SQL on `pg_stat_activity`) satisfies `done`; fails with `failure`
/// after `PATIENCE`.
pub(crate) async fn wait_for_sessions(
    app: &TestApp,
    condition: &str,
    done: impl Fn(i64) -> bool,
    failure: &str,
) {
    let deadline = Instant::now() + PATIENCE;
    let count = format!(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND ({condition})"
    );
    loop {
        let sessions = app
            .db
            .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, &count))
            .await
            .unwrap()
            .and_then(|row| row.try_get::<i64>("", "n").ok())
            .unwrap_or(0);
        if done(sessions) {
            return;
        }
        assert!(Instant::now() < deadline, "{failure} ({sessions} sessions)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits calls that were to end at their deadline: each ends within `PATIENCE`, refused
/// with DEADLINE_EXCEEDED or CANCELLED.
pub(crate) async fn expect_given_up<T: std::fmt::Debug + Send + 'static>(
    calls: Vec<tokio::task::JoinHandle<Result<T, tonic::Status>>>,
) {
    for call in calls {
        let status = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("the call ends at its deadline")
            .unwrap()
            .expect_err("the call was given up");
        assert!(
            matches!(
                status.code(),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ),
            "{status:?}"
        );
    }
}

fn invite_in_flight(
    app: &TestApp,
    email: &str,
) -> tokio::task::JoinHandle<Result<tonic::Response<pb::InviteUserResponse>, tonic::Status>> {
    let mut users = app.users.clone();
    let request = with_token(
        &app.admin_token,
        invite_request(app.account_id, "Held", email, pb::Role::Users),
    );
    tokio::spawn(async move { users.invite_user(request).await })
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn health_is_not_serving_while_a_call_in_flight_still_drains() {
    let app = spawn_app().await;
    let lock = lock_account(&app).await;
    let held = invite_in_flight(&app, "held@example.com");
    wait_for_blocked_calls(&app, 1).await;
    let mut watch = HealthWatch::open(app.addr, "").await;
    watch.wait_for(ServingStatus::Serving).await;

    let stopping = tokio::spawn(app.stop());
    watch.wait_for(ServingStatus::NotServing).await;
    assert!(!held.is_finished(), "the held call is still in flight");
    assert!(!stopping.is_finished(), "the server is still draining");

    lock.commit().await.unwrap();
    let invited = tokio::time::timeout(PATIENCE, held)
        .await
        .expect("the held call ends")
        .unwrap();
    assert!(invited.is_ok(), "the drained call completes: {invited:?}");
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("the server stops once drained")
        .unwrap();
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn a_call_that_outlasts_the_shutdown_grace_does_not_hold_the_server() {
    let app = spawn_app_configured(false, |settings| {
        settings.health.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let lock = lock_account(&app).await;
    let held = invite_in_flight(&app, "held@example.com");
    wait_for_blocked_calls(&app, 1).await;

    let stopping = Instant::now();
    tokio::time::timeout(PATIENCE, app.stop())
        .await
        .expect("the server stops after its grace, the call still held");
    assert!(stopping.elapsed() >= Duration::from_millis(300));
    assert!(!held.is_finished(), "the call was still held");
    // The stopped app's database is gone, and the lock with it.
    lock.rollback().await.ok();
    let outcome = tokio::time::timeout(PATIENCE, held).await;
    // Whatever became of it, the held call does not hang its client.
    assert!(outcome.is_ok(), "the held call ends");
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn calls_holding_every_connection_of_the_pool_are_not_an_outage() {
    let app = spawn_app_configured(false, |settings| {
        settings.database.timeout = Duration::from_secs(1);
    })
    .await;
    let mut watch = HealthWatch::open(app.addr, "").await;
    watch.wait_for(ServingStatus::Serving).await;
    // Every connection of the service's pool held by a transaction: the next one waits
    // the pool's timeout (a second) and is refused.
    let mut held = Vec::new();
    while let Ok(transaction) = app.db.begin().await {
        held.push(transaction);
        assert!(held.len() <= 100, "the pool has a limit");
    }
    assert!(!held.is_empty(), "the pool gave a connection");
    // Pings every second, each given two: four seconds without a change of status.
    let quiet = tokio::time::timeout(Duration::from_secs(4), watch.stream.message()).await;
    assert!(quiet.is_err(), "health changed: {quiet:?}");
    assert_eq!(check(app.addr, "").await, ServingStatus::Serving);
    drop(held);
    app.stop().await;
}
