//! Logging and traces. Logs: text or JSON lines on stderr, level from `RUST_LOG` (default
//! `info`); the server's lines are written by a thread of their own, in batches (see
//! [`log_writer`]), so that a call never waits on stderr and a busy server writes many
//! lines per system call. Traces: with an OTLP endpoint configured (the standard `OTEL_EXPORTER_OTLP_*`
//! variables), the service's spans are exported over gRPC or HTTP/protobuf; each call
//! continues the caller's W3C `traceparent`, and an email's sends join the trace of the call
//! that queued it (see [`trace_context`] and [`continue_trace`]).

mod log_writer;

use std::{collections::HashMap, io::IsTerminal, time::Duration};

use opentelemetry::{global, trace::TraceContextExt};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, Targets, filter_fn},
    fmt::{self, writer::BoxMakeWriter},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::config::{LogFormat, ObservabilitySettings, OtlpProtocol};

/// The target of the spans of the store's per-call reads, which go to traces and not to
/// log lines.
const READS_TARGET: &str = "usermgmt::store::readers";

/// How long shutting down waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's trace export and log writer, flushed by [`Telemetry::shutdown`].
#[must_use = "call shutdown() so that the last spans are exported and the last lines written"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Dropped last: writes the lines still queued, then stops the log writer's thread.
    log_writer: log_writer::WriterGuard,
}

impl Telemetry {
    /// Exports the spans still buffered, stops the exporter, then writes the last log lines.
    pub async fn shutdown(self) {
        let Telemetry {
            provider,
            log_writer,
        } = self;
        if let Some(provider) = provider {
            export_last_spans(provider).await;
        }
        drop(log_writer);
    }
}

async fn export_last_spans(provider: SdkTracerProvider) {
    // The exporter's flush blocks; it must not hold up one of the runtime's workers.
    let flushed =
        tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT)).await;
    match flushed {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not export the last spans"),
        Err(error) => tracing::warn!(%error, "could not export the last spans"),
    }
}

/// Logs only, written as they come (no thread of their own), as the tests use them.
pub fn init(format: LogFormat) {
    // A second init (tests start many apps in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(log_layer(format, BoxMakeWriter::new(std::io::stderr)))
        .try_init();
}

/// stderr behind a thread that writes the lines in batches. No line is dropped: when 16 MB
/// wait, the call that logs waits, as it would on stderr itself.
fn batched_stderr() -> Result<(BoxMakeWriter, log_writer::WriterGuard), String> {
    let (writer, guard) = log_writer::BatchedWriter::spawn(
        std::io::stderr(),
        log_writer::Batching::default(),
        "usermgmt-log",
    )
    .map_err(|error| format!("cannot start the log writer's thread: {error}"))?;
    Ok((BoxMakeWriter::new(writer), guard))
}

/// Logs, and traces when an OTLP endpoint is configured. Call it inside the Tokio runtime
/// (the gRPC exporter's connection runs on it).
pub fn init_with_traces(
    format: LogFormat,
    settings: &ObservabilitySettings,
) -> Result<Telemetry, String> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let Some(endpoint) = &settings.otlp_endpoint else {
        let (writer, log_writer) = batched_stderr()?;
        let _ = tracing_subscriber::registry()
            .with(log_layer(format, writer))
            .try_init();
        return Ok(Telemetry {
            provider: None,
            log_writer,
        });
    };
    // What may be logged of the endpoint: never a password it carries.
    let shown = {
        let mut shown = endpoint.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        shown
    };
    let exporter = match settings.otlp_protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.as_str())
            .build(),
        // The base endpoint of the standard: signals are posted under it.
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!(
                "{}/v1/traces",
                endpoint.as_str().trim_end_matches('/')
            ))
            .build(),
    }
    .map_err(|e| format!("OTLP exporter for {shown}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(settings.otel_service_name.clone())
                .build(),
        )
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "usermgmt");
    // The service's own spans only: the exporter's HTTP and gRPC clients must not trace
    // themselves. RUST_LOG governs the log lines, not which spans are exported.
    let traced = Targets::new().with_target("usermgmt", tracing::Level::INFO);
    let (writer, log_writer) = batched_stderr()?;
    let _ = tracing_subscriber::registry()
        .with(log_layer(format, writer))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(traced),
        )
        .try_init();
    global::set_tracer_provider(provider.clone());
    tracing::info!(endpoint = %shown, protocol = ?settings.otlp_protocol, "exporting traces");
    Ok(Telemetry {
        provider: Some(provider),
        log_writer,
    })
}

fn log_layer<S>(format: LogFormat, writer: BoxMakeWriter) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let levels = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    log_layer_at(format, writer, levels)
}

/// The log layer with its levels given.
fn log_layer_at<S>(
    format: LogFormat,
    writer: BoxMakeWriter,
    levels: EnvFilter,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // Spans for traces only: the call's (the access log line already names its method;
    // formatting the span into every log line cost about a sixth of a GetUser) and those of
    // the store's per-call reads (one per statement; their callers' spans name the account
    // and the member, and their errors are still logged inside those).
    let filter = levels.and(filter_fn(|metadata| {
        !(metadata.is_span()
            && (metadata.name() == crate::grpc::CALL_SPAN || metadata.target() == READS_TARGET))
    }));
    let layer = fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer.json().with_filter(filter).boxed(),
    }
}

/// The trace context of the current span (W3C `traceparent` and `tracestate`, as JSON), for
/// work that continues later elsewhere; `None` when nothing is traced.
pub fn trace_context() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::<String, String>::new();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier);
    });
    serde_json::to_string(&carrier).ok()
}

/// Makes `span` a child of the trace context [`trace_context`] saved; anything else is
/// ignored (the span then starts a trace of its own).
pub fn continue_trace(span: &tracing::Span, saved: Option<&str>) {
    let Some(carrier) =
        saved.and_then(|saved| serde_json::from_str::<HashMap<String, String>>(saved).ok())
    else {
        return;
    };
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Makes `span` a child of the caller's trace, from the call's `traceparent` header.
pub fn continue_caller_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = global::get_text_map_propagator(|propagator| {
        propagator.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use super::*;

    /// A writer whose lines the test reads back.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_name_the_services_span_and_leave_the_calls_and_the_reads_to_traces() {
        let lines = Lines::default();
        let writer = lines.clone();
        // A second layer that takes every span, as the traces' does: the spans exist, and
        // the log layer must still leave them out.
        let spans = tracing_subscriber::fmt::layer().with_writer(std::io::sink);
        let subscriber = tracing_subscriber::registry()
            .with(log_layer_at(
                LogFormat::Json,
                BoxMakeWriter::new(move || writer.clone()),
                EnvFilter::new("info"),
            ))
            .with(spans);
        tracing::subscriber::with_default(subscriber, || {
            let call = tracing::info_span!(crate::grpc::CALL_SPAN, call_field = 1);
            let _call = call.enter();
            let service =
                tracing::info_span!(target: "usermgmt::service", "get", service_field = 2);
            let _service = service.enter();
            let transaction =
                tracing::info_span!(target: "usermgmt::store::outbox", "claim", lease_field = 3);
            let _transaction = transaction.enter();
            let read = tracing::info_span!(target: "usermgmt::store::readers", "member_for", read_field = 4);
            let _read = read.enter();
            tracing::info!(target: "usermgmt::store::readers", "the statement failed");
        });
        let written = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(written.contains("the statement failed"), "{written}");
        assert!(written.contains("service_field"), "{written}");
        assert!(written.contains("lease_field"), "{written}");
        assert!(!written.contains("read_field"), "{written}");
        assert!(!written.contains("call_field"), "{written}");
    }
}
