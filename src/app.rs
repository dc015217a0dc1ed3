//! The application as production and the tests start it: `build()` connects, migrates and
//! binds; `run_until_stopped()` serves until the shutdown signal, turns health NOT_SERVING at
//! once, then lets calls in flight finish, for at most the shutdown grace.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use tokio::{
    net::TcpListener,
    sync::{Notify, broadcast, watch},
};
use tonic::transport::{Server, server::TcpIncoming};

use crate::clock::{SharedClock, SystemClock};
use crate::config::{HealthSettings, ServerSettings, Settings};
use crate::grpc::{
    AccessLogLayer, AuthLayer, DeadlineLayer, FairShareLayer, InFlightLimitLayer, ObserveLayer,
    TokenApi, UserApi, pb,
};
use crate::health::{Health, Monitor};
use crate::metrics::{Metrics, MetricsServer};
use crate::notifier::{Delivery, Notifier};
use crate::service::{JwtVerifier, UserService};
use crate::store::{self, Store};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Store(#[from] store::Error),
    #[error("{0}")]
    Service(#[from] crate::service::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("notifier: {0}")]
    Notifier(String),
    #[error("JWT settings: {0}")]
    Jwt(String),
    #[error("settings: {0}")]
    Settings(String),
}

/// Server reflection advertising every service served, both reflection versions included,
/// so that `grpcurl list` shows the whole server.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // The google.rpc error model and details, so grpcurl can print them.
        .register_encoded_file_descriptor_set(pb::GOOGLE_RPC_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// The use cases on the settings' database, migrated, without serving them: for the
/// operator's commands, which authenticate nobody (no JWT key is read). Emails they queue
/// are sent by a running server's notifier.
pub async fn service(settings: &Settings) -> Result<UserService, AppError> {
    let store = connect(settings).await?;
    store.migrate().await?;
    Ok(UserService::new(
        store,
        Arc::new(SystemClock),
        settings
            .invitations
            .lifetimes()
            .map_err(AppError::Settings)?,
        &settings.mail.accept_url,
        settings.tokens.limits(),
        Arc::new(Notify::new()),
        None,
    )
    .with_invite_quota(settings.invitations.quota.0))
}

/// The store on the settings' database, its calls waiting at most the database timeout for a
/// connection.
async fn connect(settings: &Settings) -> Result<Store, store::Error> {
    let timeout = settings.database.timeout;
    if timeout >= settings.server.request_timeout {
        tracing::warn!(
            database_timeout = %humantime::format_duration(timeout),
            request_timeout = %humantime::format_duration(settings.server.request_timeout),
            "the database timeout is not shorter than the request timeout: during a database \
             outage calls end with DEADLINE_EXCEEDED instead of UNAVAILABLE"
        );
    }
    Store::connect_with_timeout(settings.database.url.expose_secret(), timeout).await
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The server's limits: deadlines, concurrency, message size, keepalive.
    limits: ServerSettings,
    health: HealthSettings,
    store: Store,
    users: UserService,
    notifier: Option<Notifier>,
    outbox_wake: Arc<Notify>,
    deliveries: broadcast::Sender<Delivery>,
    metrics: Metrics,
    /// The `/metrics` listener, when metrics are on.
    metrics_server: Option<MetricsServer>,
}

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, AppError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: &Settings,
        clock: SharedClock,
    ) -> Result<Self, AppError> {
        let store = connect(settings).await?;
        store.migrate().await?;
        let listener = TcpListener::bind(settings.server.listen_addr)
            .await
            .map_err(|source| AppError::Bind {
                addr: settings.server.listen_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: settings.server.listen_addr,
            source,
        })?;
        let metrics = Metrics::new();
        let metrics_server = match settings.observability.metrics_addr {
            Some(addr) => Some(
                MetricsServer::bind(addr, metrics.clone(), store.clone(), clock.clone())
                    .await
                    .map_err(|source| AppError::Bind { addr, source })?,
            ),
            None => None,
        };
        let outbox_wake = Arc::new(Notify::new());
        let (deliveries, _) = broadcast::channel(1024);
        let notifier = if settings.notifier.enabled {
            Some(
                Notifier::from_settings(
                    &settings.mail,
                    &settings.notifier,
                    store.clone(),
                    clock.clone(),
                    outbox_wake.clone(),
                    deliveries.clone(),
                )
                .map_err(AppError::Notifier)?
                .with_metrics(metrics.clone()),
            )
        } else {
            None
        };
        let jwt = JwtVerifier::from_settings(&settings.auth, clock.clone())
            .await
            .map_err(AppError::Jwt)?;
        let users = UserService::new(
            store.clone(),
            clock,
            settings
                .invitations
                .lifetimes()
                .map_err(AppError::Settings)?,
            &settings.mail.accept_url,
            settings.tokens.limits(),
            outbox_wake.clone(),
            jwt,
        )
        .with_invite_quota(settings.invitations.quota.0)
        .with_metrics(metrics.clone())
        .with_heartbeat_interval(settings.watch.heartbeat_interval);
        Ok(Self {
            listener,
            local_addr,
            limits: settings.server.clone(),
            health: settings.health.clone(),
            store,
            users,
            notifier,
            outbox_wake,
            deliveries,
            metrics,
            metrics_server,
        })
    }

    /// Where `/metrics` is served, when metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(MetricsServer::local_addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn db(&self) -> &DatabaseConnection {
        self.store.connection()
    }

    /// The use cases this application serves.
    pub fn users(&self) -> &UserService {
        &self.users
    }

    /// Every recorded outcome of the notifier's sends, from now on.
    pub fn deliveries(&self) -> broadcast::Receiver<Delivery> {
        self.deliveries.subscribe()
    }

    /// Wakes the notifier, as a commit of an email does.
    pub fn outbox_wake(&self) -> Arc<Notify> {
        self.outbox_wake.clone()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AppError> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let health = Health::new(reporter);
        // Migrations ran in build(): SERVING at once, then as the database's pings say.
        let (stop_monitor, monitor_stopped) = watch::channel(false);
        let monitor = Monitor::new(self.store.clone(), health.clone(), &self.health)
            .start(monitor_stopped)
            .await;
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let (stop_notifier, notifier_stopped) = watch::channel(false);
        let notifier = self
            .notifier
            .map(|notifier| tokio::spawn(notifier.run(notifier_stopped)));
        // On PostgreSQL, commits announced by any replica wake this one's change streams.
        let (stop_relay, relay_stopped) = watch::channel(false);
        let relay = {
            let store = self.store.clone();
            tokio::spawn(async move { store.relay_change_notifications(relay_stopped).await })
        };
        let (stop_metrics, metrics_stopped) = watch::channel(false);
        let call_metrics = self.metrics_server.is_some().then(|| self.metrics.clone());
        let metrics_server = self
            .metrics_server
            .map(|server| tokio::spawn(server.serve(metrics_stopped)));

        let limits = self.limits;
        // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms to small replies.
        let incoming = TcpIncoming::from(self.listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(limits.tcp_keepalive));
        let mut server = Server::builder()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
            // A connection at its limit gets RESOURCE_EXHAUSTED at once instead of a queue.
            .load_shed(true);
        if limits.max_calls_per_connection > 0 {
            server = server.concurrency_limit_per_connection(limits.max_calls_per_connection);
        }
        tracing::info!(addr = %self.local_addr, "gRPC server listening");
        let streams = self.users.clone();
        let (draining, drain_begun) = tokio::sync::oneshot::channel::<()>();
        let serving = server
            // Outermost: the call's span and metrics see every code the layers inside answer.
            .layer(ObserveLayer::new(
                call_metrics,
                &[
                    pb::FILE_DESCRIPTOR_SET,
                    tonic_health::pb::FILE_DESCRIPTOR_SET,
                    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                ],
            ))
            // Then the caller's share and the server's limit, so that a waiting or shed call
            // costs no log line, no credential check and, while it waits, none of the limit.
            .layer(FairShareLayer::new(
                limits.max_calls_per_caller,
                limits.max_queued_per_caller,
                limits.request_timeout,
                limits.unauthenticated_delay,
            ))
            .layer(InFlightLimitLayer::new(limits.max_in_flight))
            .layer(AccessLogLayer)
            .layer(DeadlineLayer::new(limits.request_timeout))
            .layer(AuthLayer::new(self.users.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                pb::user_management_server::UserManagementServer::new(UserApi::new(
                    self.users.clone(),
                ))
                .max_decoding_message_size(limits.max_message_size),
            )
            .add_service(
                pb::api_tokens_server::ApiTokensServer::new(TokenApi::new(self.users))
                    .max_decoding_message_size(limits.max_message_size),
            )
            .serve_with_incoming_shutdown(incoming, async {
                shutdown.await;
                // Before the server stops taking calls: a balancer watching health turns
                // away while the calls in flight finish.
                stop_monitor.send(true).ok();
                monitor.await.ok();
                health.shut_down().await;
                // Change streams never finish on their own: they end with UNAVAILABLE, and
                // their clients reconnect to another replica with their cursor.
                streams.stop_streams();
                tracing::info!("shutting down: health NOT_SERVING, finishing calls in flight");
                draining.send(()).ok();
            });
        let drained = drain_within(serving, drain_begun, self.health.shutdown_grace).await?;
        // The notifier finishes the sends in progress, within the grace: emails it could
        // not finish are sent again once their lease runs out, here or by another replica.
        stop_notifier.send(true).ok();
        if let Some(notifier) = notifier {
            let aborter = notifier.abort_handle();
            match tokio::time::timeout(self.health.shutdown_grace, notifier).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "notifier task failed"),
                Err(_) => {
                    tracing::warn!(
                        "the notifier's sends outlasted the shutdown grace; left to the next claim"
                    );
                    aborter.abort();
                }
            }
        }
        stop_relay.send(true).ok();
        relay.await.ok();
        stop_metrics.send(true).ok();
        if let Some(metrics_server) = metrics_server {
            let aborter = metrics_server.abort_handle();
            // A scraper's idle connection does not hold up the shutdown.
            if tokio::time::timeout(std::time::Duration::from_secs(5), metrics_server)
                .await
                .is_err()
            {
                aborter.abort();
            }
        }
        if drained {
            self.store.close().await?;
        }
        // Else calls still hold connections: closing would wait for them. The process ends,
        // and their connections with it.
        tracing::info!("stopped");
        Ok(())
    }
}

/// Serves until the server has drained, or until `grace` after draining began: a stream
/// that never ends (a watcher, a hung client) must not hold the shutdown forever. Whether
/// every call finished.
async fn drain_within(
    serving: impl Future<Output = Result<(), tonic::transport::Error>>,
    drain_begun: tokio::sync::oneshot::Receiver<()>,
    grace: Duration,
) -> Result<bool, AppError> {
    let grace_over = async {
        if drain_begun.await.is_err() {
            // The server stopped before draining began.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = serving => {
            served?;
            Ok(true)
        }
        () = grace_over => {
            tracing::warn!(
                grace = %humantime::format_duration(grace),
                "calls still in flight after the shutdown grace: stopping without them"
            );
            Ok(false)
        }
    }
}
