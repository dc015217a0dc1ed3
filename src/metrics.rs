//! Prometheus metrics, served in the text exposition format at `/metrics` on a listener of
//! their own (`USERMGMT_METRICS_ADDR`).
//!
//! Each application owns its registry (`prometheus-client`) instead of installing a
//! process-wide recorder: the tests run many applications in one process, and each must see
//! only its own counts; nothing global needs setting up or tearing down either.
//!
//! The call metrics carry the names and labels of Go's grpc-prometheus
//! (`grpc_server_started_total`, `grpc_server_handled_total`,
//! `grpc_server_handling_seconds`), so existing dashboards work; they are recorded by
//! [`crate::grpc::ObserveLayer`] at the outer edge. The outbox gauges and the pools' use are
//! read when Prometheus scrapes.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::{net::TcpListener, sync::watch};
use tonic::Code;

use crate::clock::SharedClock;
use crate::store::Store;

/// The content type of the OpenMetrics text format, which `prometheus-client` writes and
/// Prometheus reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The buckets of Go's grpc-prometheus (Prometheus' default ones), in seconds.
const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One gRPC method, as grpc-prometheus labels it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `unary`, `server_stream` or `bidi_stream`.
    pub grpc_type: &'static str,
    /// The full service name, e.g. `usermgmt.v1.UserManagement`.
    pub grpc_service: String,
    pub grpc_method: String,
}

impl MethodLabels {
    /// The labels of a call to `/package.Service/Method`.
    pub fn of_path(path: &str) -> Self {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("unknown", "unknown"));
        Self {
            grpc_type: grpc_type(service, method),
            grpc_service: service.to_string(),
            grpc_method: method.to_string(),
        }
    }
}

/// The kind of a method served here: ours are unary but for WatchChanges.
fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("grpc.health.v1.Health", "Watch") => "server_stream",
        ("usermgmt.v1.UserManagement", "WatchChanges") => "server_stream",
        (service, _) if service.starts_with("grpc.reflection.") => "bidi_stream",
        _ => "unary",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

/// The name Go gives a code (`OK`, `InvalidArgument`, `Canceled`, …), which grpc-prometheus
/// puts in `grpc_code`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The application's metrics. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling_seconds: Family<HandledLabels, Histogram, fn() -> Histogram>,
    emails_sent: Counter,
    email_send_failures: Counter,
    invitations_created: Counter,
    invitations_accepted: Counter,
    outbox_waiting: Gauge,
    outbox_failed: Gauge,
    outbox_oldest_waiting_age: Gauge<f64, AtomicU64>,
    db_connections_in_use: Family<PoolLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let started = Family::<MethodLabels, Counter>::default();
        // Counters are written with the `_total` suffix.
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            started.clone(),
        );
        let handled = Family::<HandledLabels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their code",
            handled.clone(),
        );
        let handling_seconds: Family<HandledLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "grpc_server_handling_seconds",
            "Time from the call's arrival to its status, in seconds",
            handling_seconds.clone(),
        );
        let emails_sent = Counter::default();
        registry.register(
            "usermgmt_emails_sent",
            "Emails the mail server accepted",
            emails_sent.clone(),
        );
        let email_send_failures = Counter::default();
        registry.register(
            "usermgmt_email_send_failures",
            "Attempts to send an email that failed (each retry counts)",
            email_send_failures.clone(),
        );
        let invitations_created = Counter::default();
        registry.register(
            "usermgmt_invitations_created",
            "Invitations created, by InviteUser or ResendInvitation",
            invitations_created.clone(),
        );
        let invitations_accepted = Counter::default();
        registry.register(
            "usermgmt_invitations_accepted",
            "Invitations accepted",
            invitations_accepted.clone(),
        );
        let outbox_waiting = Gauge::default();
        registry.register(
            "usermgmt_outbox_emails_waiting",
            "Emails in the outbox not yet sent nor given up",
            outbox_waiting.clone(),
        );
        let outbox_failed = Gauge::default();
        registry.register(
            "usermgmt_outbox_emails_failed",
            "Emails in the outbox given up",
            outbox_failed.clone(),
        );
        let outbox_oldest_waiting_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "usermgmt_outbox_oldest_waiting_age_seconds",
            "Age of the oldest email waiting in the outbox, in seconds; 0 when none waits",
            outbox_oldest_waiting_age.clone(),
        );
        let db_connections_in_use = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "usermgmt_db_connections_in_use",
            "Database connections in use (not idle), by pool",
            db_connections_in_use.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                started,
                handled,
                handling_seconds,
                emails_sent,
                email_send_failures,
                invitations_created,
                invitations_accepted,
                outbox_waiting,
                outbox_failed,
                outbox_oldest_waiting_age,
                db_connections_in_use,
            }),
        }
    }

    /// A call began.
    pub fn call_started(&self, method: &MethodLabels) {
        self.inner.started.get_or_create(method).inc();
    }

    /// A call ended with `code` after `elapsed`.
    pub fn call_handled(&self, method: &MethodLabels, code: Code, elapsed: Duration) {
        let labels = HandledLabels {
            grpc_type: method.grpc_type,
            grpc_service: method.grpc_service.clone(),
            grpc_method: method.grpc_method.clone(),
            grpc_code: code_name(code),
        };
        self.inner
            .handling_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.inner.handled.get_or_create(&labels).inc();
    }

    pub fn email_sent(&self) {
        self.inner.emails_sent.inc();
    }

    pub fn email_send_failed(&self) {
        self.inner.email_send_failures.inc();
    }

    pub fn invitation_created(&self) {
        self.inner.invitations_created.inc();
    }

    pub fn invitation_accepted(&self) {
        self.inner.invitations_accepted.inc();
    }

    /// Reads the outbox and the pools, then writes every metric in the text format.
    pub async fn render(&self, store: &Store, clock: &SharedClock) -> String {
        let inner = &self.inner;
        match store.outbox_stats().await {
            Ok(stats) => {
                inner.outbox_waiting.set(gauge_value(stats.waiting));
                inner.outbox_failed.set(gauge_value(stats.failed));
                let age = stats
                    .oldest_waiting_since
                    .map_or(0.0, |since| (clock.now() - since).as_seconds_f64().max(0.0));
                inner.outbox_oldest_waiting_age.set(age);
            }
            // The gauges keep their last values; the scrape still answers.
            Err(error) => tracing::warn!(%error, "metrics cannot read the outbox"),
        }
        for (pool, in_use) in store.connections_in_use() {
            inner
                .db_connections_in_use
                .get_or_create(&PoolLabels { pool })
                .set(gauge_value(in_use));
        }
        let mut text = String::new();
        if let Err(error) = encode(&mut text, &inner.registry) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        text
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What the `/metrics` endpoint reads.
#[derive(Clone)]
struct Scrape {
    metrics: Metrics,
    store: Store,
    clock: SharedClock,
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    let text = scrape.metrics.render(&scrape.store, &scrape.clock).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

/// The `/metrics` listener, bound and not yet serving.
pub struct MetricsServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free one).
    pub async fn bind(
        addr: SocketAddr,
        metrics: Metrics,
        store: Store,
        clock: SharedClock,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let router = Router::new()
            .route("/metrics", get(scrape))
            .with_state(Scrape {
                metrics,
                store,
                clock,
            });
        Ok(Self {
            listener,
            local_addr,
            router,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `stop` turns true.
    pub async fn serve(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(addr = %self.local_addr, "metrics listening at /metrics");
        let stopped = async move {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(error) = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(%error, "metrics listener failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_labelled_as_grpc_prometheus_labels_them() {
        let labels = MethodLabels::of_path("/usermgmt.v1.UserManagement/InviteUser");
        assert_eq!(labels.grpc_service, "usermgmt.v1.UserManagement");
        assert_eq!(labels.grpc_method, "InviteUser");
        assert_eq!(labels.grpc_type, "unary");
        assert_eq!(
            MethodLabels::of_path("/grpc.health.v1.Health/Watch").grpc_type,
            "server_stream"
        );
        assert_eq!(
            MethodLabels::of_path("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
                .grpc_type,
            "bidi_stream"
        );
        let odd = MethodLabels::of_path("nonsense");
        assert_eq!(
            (odd.grpc_service.as_str(), odd.grpc_method.as_str()),
            ("unknown", "unknown")
        );
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::ResourceExhausted), "ResourceExhausted");
    }
}
