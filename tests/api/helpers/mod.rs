//! What the integration tests share. `spawn_app()`: the real server, in-process on port 0,
//! with a database of its own (see [`database`]), a bootstrapped account, a mail server
//! (see [`smtp`]) and a clock the test moves; the service's calls as one-liners (see
//! [`calls`]); and requests as the tests build them.

mod calls;
mod database;
pub mod jwks;
mod members;
pub mod proxy;
mod server;
pub mod smtp;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{Mutex, Notify, broadcast};
use tonic::{Code, Request, Status, transport::Channel};
use uuid::Uuid;

use usermgmt::{
    clock::{Clock, ManualClock},
    config::{AuthSettings, ServerSettings, Settings},
    grpc::pb::{
        self, api_tokens_client::ApiTokensClient, user_management_client::UserManagementClient,
    },
    notifier::{Delivery, Outcome},
};

pub use database::{TestDatabase, fresh_database, fresh_postgres_database};
pub use members::{Account, create_account};

use server::{Instance, ServerTask};
use smtp::MailServer;

/// A running instance of the service with its database and bootstrapped account. Dropping it
/// aborts its server; dropping the last instance on a database drops the database.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Where the app serves Prometheus metrics.
    pub metrics_addr: SocketAddr,
    pub db: DatabaseConnection,
    pub clock: Arc<ManualClock>,
    pub mail: MailServer,
    /// The bootstrapped account and its administrator.
    pub account_id: Uuid,
    pub admin_id: Uuid,
    pub admin_token: String,
    pub users: UserManagementClient<Channel>,
    pub tokens: ApiTokensClient<Channel>,
    deliveries: Mutex<broadcast::Receiver<Delivery>>,
    outbox_wake: Arc<Notify>,
    server: ServerTask,
    /// Last, so that it is dropped after the server and the pool: siblings share it.
    database: Arc<TestDatabase>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(true).await
}

/// A fresh app, with or without the notifier, its own mail server and a bootstrapped account.
pub async fn spawn_app_with(notifier: bool) -> TestApp {
    spawn_app_sending_to(MailServer::start(), notifier).await
}

/// A fresh app sending to `mail`, with a bootstrapped account.
pub async fn spawn_app_sending_to(mail: MailServer, notifier: bool) -> TestApp {
    spawn(mail, notifier, None).await
}

/// A fresh app (without the notifier) verifying `Bearer` JWTs as `auth` says, instead of with
/// the test secret. Its siblings and restarts use the test secret again.
pub async fn spawn_app_with_auth(auth: AuthSettings) -> TestApp {
    spawn(MailServer::start(), false, Some(auth)).await
}

/// A fresh app whose settings `configure` changes before it starts (it may route the
/// database URL through a proxy), its own mail server and a bootstrapped account.
pub async fn spawn_app_configured(
    notifier: bool,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        usermgmt::telemetry::init(usermgmt::config::LogFormat::Text);
    }
    let mail = MailServer::start();
    let database = Arc::new(fresh_database().await);
    let clock = Arc::new(ManualClock::new(
        DateTime::parse_from_rfc3339("2026-11-28T09:00:00Z")
            .expect("a valid start time")
            .with_timezone(&Utc),
    ));
    let instance =
        Instance::start_configured(&database, clock.clone(), &mail, notifier, configure).await;
    let account = create_account(
        &instance.db,
        "Acme",
        "admin@acme.example",
        "Alice Admin",
        clock.now(),
    )
    .await;
    TestApp::new(instance, database, clock, mail, account)
}

async fn spawn(mail: MailServer, notifier: bool, auth: Option<AuthSettings>) -> TestApp {
    // `TEST_LOG=1 cargo test` shows the service's logs.
    if std::env::var_os("TEST_LOG").is_some() {
        usermgmt::telemetry::init(usermgmt::config::LogFormat::Text);
    }
    let database = Arc::new(fresh_database().await);
    let clock = Arc::new(ManualClock::new(
        DateTime::parse_from_rfc3339("2026-11-28T09:00:00Z")
            .expect("a valid start time")
            .with_timezone(&Utc),
    ));
    // The server migrates the database as it starts; the account comes after.
    let instance = Instance::start_with_auth(&database, clock.clone(), &mail, notifier, auth).await;
    let account = create_account(
        &instance.db,
        "Acme",
        "admin@acme.example",
        "Alice Admin",
        clock.now(),
    )
    .await;
    TestApp::new(instance, database, clock, mail, account)
}

impl TestApp {
    fn new(
        instance: Instance,
        database: Arc<TestDatabase>,
        clock: Arc<ManualClock>,
        mail: MailServer,
        account: Account,
    ) -> TestApp {
        let Instance {
            addr,
            metrics_addr,
            db,
            users,
            tokens,
            deliveries,
            outbox_wake,
            server,
        } = instance;
        TestApp {
            addr,
            metrics_addr,
            db,
            clock,
            mail,
            account_id: account.id,
            admin_id: account.admin_id,
            admin_token: account.admin_token,
            users,
            tokens,
            deliveries,
            outbox_wake,
            server,
            database,
        }
    }

    /// The bootstrapped account.
    fn account(&self) -> Account {
        Account {
            id: self.account_id,
            admin_id: self.admin_id,
            admin_token: self.admin_token.clone(),
        }
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }

    /// Another instance of the service on the same database, clock, mail server and account.
    pub async fn sibling(&self, notifier: bool) -> TestApp {
        let instance =
            Instance::start(&self.database, self.clock.clone(), &self.mail, notifier).await;
        TestApp::new(
            instance,
            self.database.clone(),
            self.clock.clone(),
            self.mail.clone(),
            self.account(),
        )
    }

    /// Another instance on the same database, clock and mail server, whose settings
    /// `configure` changes.
    pub async fn sibling_configured(
        &self,
        notifier: bool,
        configure: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let instance = Instance::start_configured(
            &self.database,
            self.clock.clone(),
            &self.mail,
            notifier,
            configure,
        )
        .await;
        TestApp::new(
            instance,
            self.database.clone(),
            self.clock.clone(),
            self.mail.clone(),
            self.account(),
        )
    }

    /// Stops this instance, then starts another on the same database, clock and mail server
    /// whose server settings (limits, deadlines) `configure` changes.
    pub async fn restart_with_server(self, configure: impl FnOnce(&mut ServerSettings)) -> TestApp {
        let (database, clock, mail, account) = (
            self.database.clone(),
            self.clock.clone(),
            self.mail.clone(),
            self.account(),
        );
        self.stop().await;
        let instance =
            Instance::start_with(&database, clock.clone(), &mail, false, configure).await;
        TestApp::new(instance, database, clock, mail, account)
    }

    /// Stops this instance, then starts another on the same database, clock and mail server.
    pub async fn restart(self, notifier: bool) -> TestApp {
        let (database, clock, mail, account) = (
            self.database.clone(),
            self.clock.clone(),
            self.mail.clone(),
            self.account(),
        );
        self.stop().await;
        let instance = Instance::start(&database, clock.clone(), &mail, notifier).await;
        TestApp::new(instance, database, clock, mail, account)
    }

    /// The URL of this instance's database, for another process to connect to.
    pub fn database_url(&self) -> String {
        self.database.url().to_string()
    }

    pub fn wake_notifier(&self) {
        self.outbox_wake.notify_one();
    }

    /// The next recorded outcome of this instance's notifier; fails the test after 20 s.
    pub async fn next_delivery(&self) -> Delivery {
        let mut deliveries = self.deliveries.lock().await;
        tokio::time::timeout(Duration::from_secs(20), deliveries.recv())
            .await
            .expect("the notifier recorded an outcome in time")
            .expect("the notifier runs")
    }

    /// Waits for `n` outcomes equal to `outcome`, ignoring others.
    pub async fn wait_deliveries(&self, n: usize, outcome: Outcome) -> Vec<Delivery> {
        let mut seen = Vec::new();
        while seen.len() < n {
            let delivery = self.next_delivery().await;
            if delivery.outcome == outcome {
                seen.push(delivery);
            }
        }
        seen
    }

    /// Stops the server and waits until it has finished.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// The HS256 secret the test service verifies `Bearer` tokens with.
pub const JWT_SECRET: &str = "the test suite's HS256 secret, 32+ bytes";

/// A signed JWT for `sub`, expiring `valid_for` from now by the test clock.
pub fn jwt(sub: &str, exp: DateTime<Utc>, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "exp": exp.timestamp() }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a signed JWT")
}

impl TestApp {
    /// A JWT the test service accepts for `user_id`, valid for an hour by the test clock.
    pub fn signed_in(&self, user_id: impl ToString) -> String {
        jwt(
            &user_id.to_string(),
            self.clock_now() + chrono::TimeDelta::hours(1),
            JWT_SECRET,
        )
    }
}

/// A request carrying `authorization: Bearer <jwt>`.
pub fn with_bearer<T>(jwt: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {jwt}").parse().expect("ASCII metadata"),
    );
    request
}

/// A request carrying `authorization: APIKey <token>`.
pub fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("APIKey {token}").parse().expect("ASCII metadata"),
    );
    request
}

pub fn invite_request(
    account_id: Uuid,
    name: &str,
    email: &str,
    role: pb::Role,
) -> pb::InviteUserRequest {
    pb::InviteUserRequest {
        account_id: account_id.to_string(),
        name: name.into(),
        email: email.into(),
        language: pb::Language::En as i32,
        role: role as i32,
        cloud_access: None,
        request_id: None,
        invitation_ttl: None,
        send_email: None,
    }
}

/// The field names of an INVALID_ARGUMENT's BadRequest.
pub fn bad_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("a BadRequest detail")
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect()
}

/// The ErrorInfo reason of a status.
pub fn reason(status: &Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .expect("an ErrorInfo detail")
        .reason
}
