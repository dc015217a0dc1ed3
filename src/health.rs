//! What `grpc.health.v1` reports, for the server (`""`) and each service alike: SERVING
//! while the database answers its pings, NOT_SERVING from the first ping that fails or
//! outlasts its timeout until one succeeds again, and NOT_SERVING for good once shutdown
//! begins.

use std::time::Duration;

use tokio::{sync::watch, task::JoinHandle};
use tonic::server::NamedService;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::config::HealthSettings;
use crate::grpc::{TokenApi, UserApi, pb};
use crate::store::Store;

/// Every name the health service answers for: the whole server and each service.
pub const SERVICES: [&str; 3] = [
    "",
    <pb::user_management_server::UserManagementServer<UserApi> as NamedService>::NAME,
    <pb::api_tokens_server::ApiTokensServer<TokenApi> as NamedService>::NAME,
];

/// Sets the one status of every name in [`SERVICES`].
#[derive(Clone, Debug)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    pub fn new(reporter: HealthReporter) -> Self {
        Self { reporter }
    }

    pub async fn set(&self, status: ServingStatus) {
        for service in SERVICES {
            self.reporter.set_service_status(service, status).await;
        }
    }

    /// Shutdown has begun: NOT_SERVING. Each name's channel is then replaced by a new one
    /// that reads NOT_SERVING too: the `Watch` streams open on the old one end once they have
    /// carried NOT_SERVING, so that no watcher keeps the server draining, while a `Check`
    /// still answers NOT_SERVING.
    pub async fn shut_down(mut self) {
        self.set(ServingStatus::NotServing).await;
        for service in SERVICES {
            self.reporter.clear_service_status(service).await;
            self.reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
    }
}

/// Pings the database on an interval and turns the health status with the answers.
pub struct Monitor {
    store: Store,
    health: Health,
    interval: Duration,
    timeout: Duration,
}

impl Monitor {
    pub fn new(store: Store, health: Health, settings: &HealthSettings) -> Self {
        Self {
            store,
            health,
            interval: settings.check_interval,
            timeout: settings.check_timeout,
        }
    }

    /// Reports SERVING (migrations have just run: the database answered), then pings until
    /// `stop` turns true; the caller awaits the handle before it sets the shutdown status,
    /// so that no ping overwrites it.
    pub async fn start(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        self.health.set(ServingStatus::Serving).await;
        tokio::spawn(async move {
            let mut serving = true;
            let mut ticks = tokio::time::interval(self.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.changed() => break,
                }
                if *stop.borrow() {
                    break;
                }
                let answered = match tokio::time::timeout(self.timeout, self.store.ping()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err(format!(
                        "no answer within {}",
                        humantime::format_duration(self.timeout)
                    )),
                };
                match (serving, answered) {
                    (true, Err(error)) => {
                        tracing::warn!(%error, "database unreachable: health NOT_SERVING");
                        serving = false;
                        self.health.set(ServingStatus::NotServing).await;
                    }
                    (false, Ok(())) => {
                        tracing::info!("database reachable again: health SERVING");
                        serving = true;
                        self.health.set(ServingStatus::Serving).await;
                    }
                    _ => {}
                }
            }
        })
    }
}
