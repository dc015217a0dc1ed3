//! `spawn_app()`: the real server, in-process on port 0, with a fresh database per test
//! (SQLite in a temporary folder, or a new PostgreSQL database when
//! `USERMGMT_TEST_DATABASE_URL` names a server) and a clock the test moves.

use std::{net::SocketAddr, sync::Arc};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, Database, DatabaseConnection, EntityTrait,
};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, broadcast, oneshot};
use tonic::{Code, Request, Status, transport::Channel};
use uuid::Uuid;

use crate::smtp::MailServer;

use usermgmt::{
    app::Application,
    clock::{Clock, ManualClock},
    config::Settings,
    domain::{ApiTokenSecret, CloudAccess, DisplayName, Email, Language, Role},
    grpc::pb::{
        self, api_tokens_client::ApiTokensClient, user_management_client::UserManagementClient,
    },
    notifier::{Delivery, Outcome},
    store::{self, entity},
};

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: DatabaseConnection,
    pub database_url: String,
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
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh database URL: SQLite by default, PostgreSQL when asked for.
pub async fn fresh_database(dir: &tempfile::TempDir) -> String {
    match std::env::var("USERMGMT_TEST_DATABASE_URL") {
        Ok(server_url) if !server_url.is_empty() => {
            let name = format!("usermgmt_test_{}", Uuid::new_v4().simple());
            let admin = Database::connect(&server_url)
                .await
                .expect("USERMGMT_TEST_DATABASE_URL is set but PostgreSQL is unreachable");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the test database");
            admin.close().await.ok();
            let base = server_url.split('?').next().unwrap_or(&server_url);
            let (server, _) = base.rsplit_once('/').expect("a database URL with a path");
            format!("{server}/{name}")
        }
        _ => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("usermgmt.db").display()
        ),
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

/// A request carrying `authorization: Bearer <jwt>`.
pub fn with_bearer<T>(jwt: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {jwt}").parse().expect("ASCII metadata"),
    );
    request
}

fn settings(database_url: &str, mail: &MailServer, notifier: bool) -> Settings {
    let mut settings = Settings::for_database(database_url);
    settings.mail.smtp_url = Some(mail.url().into());
    settings.mail.smtp_ca_file = mail.ca_file.clone();
    settings.mail.from = "Acme Cloud <no-reply@usermgmt.test>".into();
    settings.mail.accept_url = "https://console.example/accept-invite".into();
    settings.mail.smtp_pool_size = 4;
    settings.mail.smtp_timeout = Duration::from_secs(5);
    settings.notifier.enabled = notifier;
    // Only a second instance relies on polling; this one wakes on its own commits.
    settings.notifier.poll_interval = Duration::from_millis(50);
    settings.notifier.retry_initial = Duration::from_secs(1);
    settings.notifier.retry_max = Duration::from_secs(60);
    settings.notifier.max_attempts = 5;
    settings.auth.jwt_secret = Some(JWT_SECRET.into());
    settings
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
    // `TEST_LOG=1 cargo test` shows the service's logs.
    if std::env::var_os("TEST_LOG").is_some() {
        usermgmt::telemetry::init(usermgmt::config::LogFormat::Text);
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let database_url = fresh_database(&dir).await;
    let clock = Arc::new(ManualClock::new(
        DateTime::parse_from_rfc3339("2026-11-28T09:00:00Z")
            .expect("a valid start time")
            .with_timezone(&Utc),
    ));
    let mut app = start(database_url, clock, mail, notifier).await;
    let created = store::accounts::create_with_admin(
        &app.db,
        "Acme",
        &Email::parse("admin@acme.example").unwrap(),
        &DisplayName::parse("Alice Admin").unwrap(),
        app.clock.now(),
    )
    .await
    .expect("bootstrap");
    app.account_id = created.account_id;
    app.admin_id = created.user_id;
    app.admin_token = created.api_token.expose().to_string();
    app._dir = Some(dir);
    app
}

async fn start(
    database_url: String,
    clock: Arc<ManualClock>,
    mail: MailServer,
    notifier: bool,
) -> TestApp {
    let app =
        Application::build_with_clock(&settings(&database_url, &mail, notifier), clock.clone())
            .await
            .expect("the application builds");
    let addr = app.local_addr();
    let db = app.db().clone();
    let deliveries = Mutex::new(app.deliveries());
    let outbox_wake = app.outbox_wake();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            stopped.await.ok();
        })
        .await
        .expect("the server runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the server");
    TestApp {
        addr,
        db,
        database_url,
        clock,
        mail,
        account_id: Uuid::nil(),
        admin_id: Uuid::nil(),
        admin_token: String::new(),
        users: UserManagementClient::new(channel.clone()),
        tokens: ApiTokensClient::new(channel),
        deliveries,
        outbox_wake,
        shutdown: Some(shutdown),
        server: Some(server),
        _dir: None,
    }
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
    }
}

/// A member added straight to the database, with an API token of the given role.
pub struct Member {
    pub user_id: Uuid,
    pub token: String,
}

impl TestApp {
    /// Adds an active member of `account_id` holding a token of `token_role`.
    pub async fn add_member(
        &self,
        account_id: Uuid,
        email: &str,
        role: Role,
        token_role: Role,
    ) -> Member {
        let user_id = self.add_member_without_token(account_id, email, role).await;
        let token = self
            .issue_token(account_id, user_id, token_role, None)
            .await;
        Member { user_id, token }
    }

    /// Adds an active member of `account_id` (a new, activated user) with no token.
    pub async fn add_member_without_token(
        &self,
        account_id: Uuid,
        email: &str,
        role: Role,
    ) -> Uuid {
        let now = self.clock.now();
        let user_id = Uuid::now_v7();
        entity::user::ActiveModel {
            id: Set(user_id),
            email: Set(email.to_lowercase()),
            name: Set(email.into()),
            name_lower: Set(email.to_lowercase()),
            language: Set(Language::En.code().into()),
            password_hash: Set(None),
            activated: Set(true),
            two_factor_enabled: Set(false),
            created_at: Set(now),
        }
        .insert(&self.db)
        .await
        .unwrap();
        entity::membership::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(account_id),
            user_id: Set(user_id),
            role: Set(role.id()),
            cloud_access: Set(serde_json::to_string(&CloudAccess::default_for(role)).unwrap()),
            status: Set("active".into()),
            invited_by: Set(None),
            invited_at: Set(now),
            invitation_expires_at: Set(None),
            accepted_at: Set(Some(now)),
        }
        .insert(&self.db)
        .await
        .unwrap();
        user_id
    }

    pub async fn issue_token(
        &self,
        account_id: Uuid,
        issuer_id: Uuid,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> String {
        let secret = ApiTokenSecret::generate();
        entity::api_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(account_id),
            issuer_id: Set(issuer_id),
            name: Set("test".into()),
            description: Set(String::new()),
            role: Set(role.id()),
            secret_hash: Set(secret.hash().into_string()),
            expires_at: Set(expires_at),
            created_at: Set(self.clock.now()),
            last_used_at: Set(None),
            deleted_at: Set(None),
        }
        .insert(&self.db)
        .await
        .unwrap();
        secret.expose().to_string()
    }

    /// A second account with its own administrator.
    pub async fn other_account(&self, admin_email: &str) -> (Uuid, Uuid, String) {
        let created = store::accounts::create_with_admin(
            &self.db,
            "Globex",
            &Email::parse(admin_email).unwrap(),
            &DisplayName::parse("Bob Boss").unwrap(),
            self.clock.now(),
        )
        .await
        .unwrap();
        (
            created.account_id,
            created.user_id,
            created.api_token.expose().to_string(),
        )
    }

    pub async fn count_users(&self) -> usize {
        entity::user::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
            .len()
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }

    /// Another instance of the service on the same database, clock, mail server and account.
    pub async fn sibling(&self, notifier: bool) -> TestApp {
        let mut other = start(
            self.database_url.clone(),
            self.clock.clone(),
            self.mail.clone(),
            notifier,
        )
        .await;
        other.account_id = self.account_id;
        other.admin_id = self.admin_id;
        other.admin_token = self.admin_token.clone();
        other
    }

    /// Stops this instance, then starts another on the same database, clock and mail server.
    pub async fn restart(mut self, notifier: bool) -> TestApp {
        let dir = self._dir.take();
        let (account_id, admin_id, admin_token) =
            (self.account_id, self.admin_id, self.admin_token.clone());
        let (database_url, clock, mail) = (
            self.database_url.clone(),
            self.clock.clone(),
            self.mail.clone(),
        );
        self.stop().await;
        let mut app = start(database_url, clock, mail, notifier).await;
        app.account_id = account_id;
        app.admin_id = admin_id;
        app.admin_token = admin_token;
        app._dir = dir;
        app
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
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server stops cleanly");
        }
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
