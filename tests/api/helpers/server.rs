//! One running instance of the service, in-process on port 0, and the task serving it, which
//! ends when the instance is stopped or, failing that, dropped.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use tokio::{
    sync::{Mutex, Notify, broadcast, oneshot},
    task::JoinHandle,
};
use tonic::transport::Channel;
use usermgmt::{
    app::Application,
    clock::ManualClock,
    config::{AuthSettings, ServerSettings, Settings},
    grpc::pb::{api_tokens_client::ApiTokensClient, user_management_client::UserManagementClient},
    notifier::Delivery,
};

use super::{JWT_SECRET, database::TestDatabase, smtp::MailServer};

/// A started instance: its address, its pool, clients connected to it and its notifier's
/// outcomes.
pub(super) struct Instance {
    pub addr: SocketAddr,
    /// Where the instance serves `/metrics`.
    pub metrics_addr: SocketAddr,
    pub db: DatabaseConnection,
    pub users: UserManagementClient<Channel>,
    pub tokens: ApiTokensClient<Channel>,
    pub deliveries: Mutex<broadcast::Receiver<Delivery>>,
    pub outbox_wake: Arc<Notify>,
    pub server: ServerTask,
}

impl Instance {
    pub async fn start(
        database: &TestDatabase,
        clock: Arc<ManualClock>,
        mail: &MailServer,
        notifier: bool,
    ) -> Instance {
        Self::start_configured(database, clock, mail, notifier, |_| {}).await
    }

    /// An instance verifying JWTs as `auth` says, or with the test secret.
    pub async fn start_with_auth(
        database: &TestDatabase,
        clock: Arc<ManualClock>,
        mail: &MailServer,
        notifier: bool,
        auth: Option<AuthSettings>,
    ) -> Instance {
        Self::start_configured(database, clock, mail, notifier, |settings| {
            if let Some(auth) = auth {
                settings.auth = auth;
            }
        })
        .await
    }

    /// Starts an instance whose server settings `configure` changes.
    pub async fn start_with(
        database: &TestDatabase,
        clock: Arc<ManualClock>,
        mail: &MailServer,
        notifier: bool,
        configure: impl FnOnce(&mut ServerSettings),
    ) -> Instance {
        Self::start_configured(database, clock, mail, notifier, |settings| {
            configure(&mut settings.server)
        })
        .await
    }

    pub async fn start_configured(
        database: &TestDatabase,
        clock: Arc<ManualClock>,
        mail: &MailServer,
        notifier: bool,
        configure: impl FnOnce(&mut Settings),
    ) -> Instance {
        let mut settings = settings(database.url(), mail, notifier);
        configure(&mut settings);
        let app = Application::build_with_clock(&settings, clock)
            .await
            .expect("the application builds");
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr().expect("metrics are on");
        let db = app.db().clone();
        let deliveries = Mutex::new(app.deliveries());
        let outbox_wake = app.outbox_wake();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until_stopped(async {
                stopped.await.ok();
            })
            .await
            .expect("the server runs");
        });
        let server = ServerTask {
            shutdown: Some(shutdown),
            task: Some(task),
        };
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to the server");
        Instance {
            addr,
            metrics_addr,
            db,
            users: UserManagementClient::new(channel.clone()),
            tokens: ApiTokensClient::new(channel),
            deliveries,
            outbox_wake,
            server,
        }
    }
}

/// The task serving an instance. Dropped without `stop()` (a test that ends early or
/// panics), it is aborted rather than left serving.
pub(super) struct ServerTask {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ServerTask {
    /// Asks the server to stop and waits until it has finished.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the server stops cleanly");
        }
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
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
    settings.auth.jwt_secret = Some(JWT_SECRET.into());
    // Refusals answered at once: tests make many on purpose. The delay has its own test.
    settings.server.unauthenticated_delay = Duration::ZERO;
    settings.observability.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    settings
}
