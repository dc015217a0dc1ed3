//! OpenTelemetry traces, received by an OTLP collector inside the test (gRPC and
//! HTTP/protobuf). The tracing subscriber is process-wide, so the service runs as a process
//! of its own, configured by the standard `OTEL_*` variables. An invitation made with the
//! caller's `traceparent` yields one trace holding the call's span, its transaction's and
//! the email's send; the spans are exported when the process stops (the export's delay is
//! set far beyond the test), so the flush at shutdown is tested too.

use std::{collections::HashMap, net::SocketAddr, process::Stdio, sync::Arc, time::Duration};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value as AnyValue,
    trace::v1::Span,
};
use prost::Message;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    process::{Child, Command},
    sync::{Mutex, oneshot},
};
use tonic::transport::{Channel, server::TcpIncoming};
use usermgmt::grpc::pb::{self, user_management_client::UserManagementClient};

use crate::helpers::{
    create_account, fresh_database, invite_request, smtp::MailServer, with_token,
};

/// Every span the collector received, with the `service.name` of its resource.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    async fn record(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.0.lock().await;
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref())
                .and_then(|value| match &value.value {
                    Some(AnyValue::StringValue(name)) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }

    async fn spans(&self) -> Vec<(String, Span)> {
        self.0.lock().await.clone()
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.record(request.into_inner()).await;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// OTLP/HTTP: a protobuf body posted to `/v1/traces`.
async fn http_export(State(received): State<Received>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    received.record(request).await;
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// A collector on a free port, serving until `stop` fires.
struct Collector {
    endpoint: String,
    received: Received,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

async fn collector(protocol: &str) -> Collector {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async {
        stopped.await.ok();
    };
    match protocol {
        "grpc" => {
            let service = TraceServiceServer::new(received.clone());
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(TcpIncoming::from(listener), stopped),
            );
        }
        _ => {
            let router = Router::new()
                .route("/v1/traces", post(http_export))
                .with_state(received.clone());
            tokio::spawn(
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .into_future(),
            );
        }
    }
    Collector {
        endpoint: format!("http://{addr}"),
        received,
        stop: Some(stop),
    }
}

/// The service as its own process; killed if the test ends early.
struct Service {
    child: Child,
    addr: SocketAddr,
}

/// Starts the service on port 0 and reads the address it listens on from its JSON log.
async fn start_service(
    database_url: &str,
    mail: &MailServer,
    endpoint: &str,
    protocol: &str,
) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_usermgmt"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("USERMGMT_DATABASE_URL", database_url)
        .env("USERMGMT_LISTEN_ADDR", "127.0.0.1:0")
        .env("USERMGMT_LOG_FORMAT", "json")
        .env("USERMGMT_SMTP_URL", mail.url())
        .env("USERMGMT_MAIL_FROM", "Acme Cloud <no-reply@usermgmt.test>")
        .env("USERMGMT_NOTIFIER_POLL_INTERVAL", "50ms")
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_SERVICE_NAME", "usermgmt-under-test")
        // Nothing is exported before the process stops: what arrives, the shutdown flushed.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the service starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if entry["fields"]["message"] == "gRPC server listening" {
                return entry["fields"]["addr"]
                    .as_str()
                    .expect("the address is logged")
                    .parse::<SocketAddr>()
                    .expect("an address");
            }
        }
        panic!("the service ended before it listened");
    })
    .await
    .expect("the service listens in time");
    // Keep reading the log so that the service never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Service { child, addr }
}

impl Service {
    /// SIGTERM, as an orchestrator stops it, then waits for it to exit.
    async fn terminate(mut self) {
        let pid = self.child.id().expect("the service runs");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the service stops in time")
            .unwrap();
        assert!(exit.success(), "{exit:?}");
    }
}

fn hex_id(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

async fn one_trace_holds_the_call_and_the_email_send(protocol: &str) {
    let database = fresh_database().await;
    let mail = MailServer::start();
    let collector = collector(protocol).await;
    let service = start_service(database.url(), &mail, &collector.endpoint, protocol).await;
    let db = usermgmt::store::connect(database.url()).await.unwrap();
    let account = create_account(
        &db,
        "Acme",
        "admin@acme.example",
        "Alice",
        chrono::Utc::now(),
    )
    .await;

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span_id = "00f067aa0ba902b7";
    let mut request = with_token(
        &account.admin_token,
        invite_request(account.id, "Traced", "traced@example.com", pb::Role::Users),
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span_id}-01")
            .parse()
            .unwrap(),
    );
    let channel = Channel::from_shared(format!("http://{}", service.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    UserManagementClient::new(channel)
        .invite_user(request)
        .await
        .expect("the invitation is made");
    mail.wait_for(1).await;
    db.close().await.unwrap();
    service.terminate().await;

    let spans = collector.received.spans().await;
    let in_trace: Vec<&Span> = spans
        .iter()
        .filter(|(_, span)| hex_id(&span.trace_id) == trace_id)
        .map(|(_, span)| span)
        .collect();
    let names: Vec<&str> = in_trace.iter().map(|span| span.name.as_str()).collect();
    let by_name: HashMap<&str, &Span> = in_trace
        .iter()
        .map(|span| (span.name.as_str(), *span))
        .collect();
    let call = by_name
        .get("usermgmt.v1.UserManagement/InviteUser")
        .unwrap_or_else(|| panic!("the call's span is in the trace: {names:?}"));
    assert_eq!(
        hex_id(&call.parent_span_id),
        caller_span_id,
        "it continues the caller's span"
    );
    let attribute = |span: &Span, key: &str| {
        span.attributes
            .iter()
            .find(|attribute| attribute.key == key)
            .and_then(|attribute| attribute.value.clone())
            .and_then(|value| value.value)
    };
    assert_eq!(
        attribute(call, "rpc.method"),
        Some(AnyValue::StringValue("InviteUser".into()))
    );
    assert_eq!(
        attribute(call, "rpc.grpc.status_code"),
        Some(AnyValue::IntValue(0))
    );
    assert!(
        by_name.contains_key("db.transaction invite"),
        "the transaction's span is in the trace: {names:?}"
    );
    let send = by_name
        .get("send email")
        .unwrap_or_else(|| panic!("the email's send is in the trace: {names:?}"));
    assert!(
        in_trace
            .iter()
            .any(|span| span.span_id == send.parent_span_id),
        "the send's parent is a span of the trace: {names:?}"
    );
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "usermgmt-under-test"),
        "every span carries OTEL_SERVICE_NAME"
    );
}

#[tokio::test]
async fn an_otlp_grpc_collector_gets_one_trace_with_the_call_and_the_email_send() {
    one_trace_holds_the_call_and_the_email_send("grpc").await;
}

#[tokio::test]
async fn an_otlp_http_collector_gets_one_trace_with_the_call_and_the_email_send() {
    one_trace_holds_the_call_and_the_email_send("http/protobuf").await;
}
