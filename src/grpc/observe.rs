//! The outermost layer: one span per call, continuing the caller's W3C `traceparent`, and
//! the call metrics of [`crate::metrics`]. Being outermost, it sees the code of every
//! answer, those of the layers inside it too (a shed call, an expired deadline, a refused
//! credential): from the `grpc-status` header of a trailers-only answer, else from the
//! trailers at the end of the body.

use std::{
    collections::HashSet,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures_util::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use prost::Message;
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{MethodLabels, Metrics};

/// The name of every call's span. Traces get it; log lines do not (see
/// [`crate::telemetry`]): the access log line says which call it was.
pub const CALL_SPAN: &str = "grpc call";

/// Records a span and, when `metrics` is given, the call metrics of every call.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Option<Metrics>,
    known: Arc<HashSet<String>>,
}

impl ObserveLayer {
    /// `descriptor_sets`: the encoded descriptors of every service served. Calls to any
    /// other path are labelled `unknown`, so that nonsense paths cannot grow the metrics
    /// without bound.
    pub fn new(metrics: Option<Metrics>, descriptor_sets: &[&[u8]]) -> Self {
        let mut known = HashSet::new();
        for encoded in descriptor_sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*encoded) else {
                continue;
            };
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        known.insert(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        Self {
            metrics,
            known: Arc::new(known),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
            known: self.known.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Option<Metrics>,
    known: Arc<HashSet<String>>,
}

impl<S> Service<Request<Body>> for Observe<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let method = if self.known.contains(path) {
            MethodLabels::of_path(path)
        } else {
            MethodLabels::of_path("/unknown/unknown")
        };
        let span = tracing::info_span!(
            CALL_SPAN,
            otel.name = %format_args!("{}/{}", method.grpc_service, method.grpc_method),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.grpc.status_code = Empty,
        );
        // For the trace only: the log lines of the call need not repeat them.
        span.set_attribute("rpc.system", "grpc");
        span.set_attribute("rpc.service", method.grpc_service.clone());
        span.set_attribute("rpc.method", method.grpc_method.clone());
        crate::telemetry::continue_caller_trace(&span, request.headers());
        if let Some(metrics) = &self.metrics {
            metrics.call_started(&method);
        }
        let observation = Observation {
            method,
            started: Instant::now(),
            metrics: self.metrics.clone(),
            span: span.clone(),
            finished: false,
        };
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                match future.await {
                    Ok(response) => Ok(observe_response(response, observation)),
                    Err(error) => {
                        observation.finish(Code::Unknown);
                        Err(error)
                    }
                }
            }
            .instrument(span),
        )
    }
}

/// A trailers-only answer (every error, here) carries its code in the headers; otherwise
/// the code comes with the trailers, once the body has been sent.
fn observe_response(response: Response<Body>, observation: Observation) -> Response<Body> {
    match status_code(response.headers()) {
        Some(code) => {
            observation.finish(code);
            response
        }
        None => response.map(|body| {
            Body::new(ObservedBody {
                inner: body,
                observation: Some(observation),
            })
        }),
    }
}

fn status_code(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// One call in progress: recorded once, with its code, when it ends.
struct Observation {
    method: MethodLabels,
    started: Instant,
    metrics: Option<Metrics>,
    span: tracing::Span,
    finished: bool,
}

impl Observation {
    fn finish(mut self, code: Code) {
        self.record(code);
    }

    fn record(&mut self, code: Code) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.span.record("rpc.grpc.status_code", code as i32);
        // The codes OpenTelemetry counts as a server's error.
        if matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ) {
            self.span.record("otel.status_code", "ERROR");
        }
        if let Some(metrics) = &self.metrics {
            metrics.call_handled(&self.method, code, self.started.elapsed());
        }
    }
}

impl Drop for Observation {
    /// An answer dropped before its status was sent: the client went away.
    fn drop(&mut self) {
        self.record(Code::Cancelled);
    }
}

/// The answer's body, watched for the trailers that carry its code.
struct ObservedBody {
    inner: Body,
    observation: Option<Observation>,
}

impl ObservedBody {
    fn finish(&mut self, code: Code) {
        if let Some(observation) = self.observation.take() {
            observation.finish(code);
        }
    }
}

impl http_body::Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = status_code(trailers).unwrap_or(Code::Unknown);
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => self.finish(status.code()),
            Poll::Ready(None) => self.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
