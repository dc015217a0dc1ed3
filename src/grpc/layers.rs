//! Tower layers in front of every service: the server's in-flight limit, the per-call log
//! line, the call's deadline and the credential check.

use std::{
    collections::HashMap,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tokio::sync::Semaphore;
use tonic::{Code, Status, body::Body};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use crate::service::UserService;

/// The call's id: its `x-request-id` metadata when it is a sensible one, else a new UUID.
/// It is logged with the call and recorded in the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    fn of(headers: &http::HeaderMap) -> Self {
        let given = headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|id| {
                !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())
            });
        Self(given.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string))
    }
}

/// Whether a call must carry a credential: every call of ours but accepting an invitation;
/// health checks and reflection are open.
fn requires_credential(path: &str) -> bool {
    path.starts_with("/usermgmt.v1.") && path != "/usermgmt.v1.UserManagement/AcceptInvitation"
}

/// The calls that look the caller's API token up in their own statement, beside the
/// caller's role and what they read (for InviteUser, the invitation's facts): the auth layer
/// only screens the token.
fn looks_up_its_token(path: &str) -> bool {
    matches!(
        path,
        "/usermgmt.v1.UserManagement/GetUser"
            | "/usermgmt.v1.UserManagement/InviteUser"
            | "/usermgmt.v1.UserManagement/ListUsers"
            | "/usermgmt.v1.UserManagement/ListAuditEvents"
            | "/usermgmt.v1.ApiTokens/ListApiTokens"
    )
}

/// Whether the response refuses the call's credential.
fn is_unauthenticated(response: &Response<Body>) -> bool {
    Status::from_header_map(response.headers())
        .is_some_and(|status| status.code() == Code::Unauthenticated)
}

/// The response to a refused credential (or to a failure to check it).
fn refused(error: crate::service::Error) -> Response<Body> {
    let status = Status::from(error);
    let refused = status.code() == Code::Unauthenticated;
    let mut response = status.into_http();
    if refused {
        response.extensions_mut().insert(RefusedCredential);
    }
    response
}

/// Resolves the `authorization` metadata to a [`crate::service::Caller`] in the request's
/// extensions, or answers UNAUTHENTICATED without reaching the handler.
/// A refusal is marked [`RefusedCredential`] for [`super::FairShareLayer`], which answers it
/// late.
#[derive(Clone)]
pub struct AuthLayer {
    users: UserService,
}

impl AuthLayer {
    pub fn new(users: UserService) -> Self {
        Self { users }
    }
}

/// Marks a response that refused the call's credential.
#[derive(Clone, Copy, Debug)]
pub(super) struct RefusedCredential;

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            users: self.users.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    users: UserService,
}

impl<S> Service<Request<Body>> for Authenticated<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call; the fresh one waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let users = self.users.clone();
        Box::pin(async move {
            if !requires_credential(request.uri().path()) {
                return inner.call(request).await;
            }
            let authorization = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|value| value.to_str().unwrap_or_default());
            let request_id = request.extensions().get::<RequestId>().cloned();
            if looks_up_its_token(request.uri().path()) {
                let mut presented = match users.present(authorization).await {
                    Ok(presented) => presented,
                    Err(error) => return Ok(refused(error)),
                };
                if let Some(RequestId(id)) = &request_id {
                    presented.set_request_id(id);
                }
                request.extensions_mut().insert(presented);
                let mut response = inner.call(request).await?;
                // The token was looked up by the handler's statement.
                if is_unauthenticated(&response) {
                    response.extensions_mut().insert(RefusedCredential);
                }
                return Ok(response);
            }
            match users.authenticate(authorization).await {
                Ok(mut caller) => {
                    if let Some(RequestId(id)) = request_id {
                        caller.request_id = id;
                    }
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(error) => Ok(refused(error)),
            }
        })
    }
}

/// Logs one line per call: method, gRPC code and latency. Never the metadata or the body,
/// so no credential reaches the log.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog { inner }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for AccessLog<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let method = request.uri().path().to_string();
        let request_id = RequestId::of(request.headers());
        request.extensions_mut().insert(request_id.clone());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            // Unary errors travel as trailers-only responses, with the code in the headers;
            // a response without one is a success whose OK status follows in the trailers.
            let code = match &response {
                Ok(response) => Status::from_header_map(response.headers())
                    .map_or(tonic::Code::Ok, |status| status.code()),
                Err(_) => tonic::Code::Unknown,
            };
            tracing::info!(
                %method,
                request_id = %request_id.0,
                code = ?code,
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                "grpc call"
            );
            response
        })
    }
}

/// A status of this layer with its `ErrorInfo` reason, as the service's errors carry.
pub(super) fn refusal(code: Code, message: &str, reason: &str) -> Response<Body> {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, "usermgmt", HashMap::new()),
    )
    .into_http()
}

/// Whether a call counts against the server's in-flight limit: every call of ours. Health
/// checks and reflection stay answerable however busy the server is.
pub(super) fn counts_in_flight(path: &str) -> bool {
    path.starts_with("/usermgmt.v1.")
}

/// Bounds the calls the whole server works on at once. A call beyond the bound is refused at
/// once with RESOURCE_EXHAUSTED rather than queued, so a flood is answered quickly and the
/// calls already admitted keep their pace. `max` 0: no bound.
#[derive(Clone, Debug)]
pub struct InFlightLimitLayer {
    permits: Option<Arc<Semaphore>>,
}

impl InFlightLimitLayer {
    pub fn new(max: usize) -> Self {
        Self {
            permits: (max > 0).then(|| Arc::new(Semaphore::new(max))),
        }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            permits: self.permits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    permits: Option<Arc<Semaphore>>,
}

impl<S> Service<Request<Body>> for InFlightLimit<S>
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
        let permit = match &self.permits {
            Some(permits) if counts_in_flight(request.uri().path()) => {
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        // Not logged per call: a flood must not become a flood of log lines.
                        tracing::debug!(method = %request.uri().path(), "shed: server busy");
                        let busy = refusal(
                            Code::ResourceExhausted,
                            "The server is busy; retry later",
                            "SERVER_BUSY",
                        );
                        return Box::pin(std::future::ready(Ok(busy)));
                    }
                }
            }
            _ => None,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(permit);
            response
        })
    }
}

/// The `grpc-timeout` a client sent: up to eight digits and a unit (gRPC over HTTP/2).
fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// How much earlier than the client's `grpc-timeout` a call is ended.
const AHEAD_OF_TONIC: Duration = Duration::from_millis(10);

/// How long a call may take from now: the client's `grpc-timeout`, a little earlier (tonic
/// runs a timer of its own on it, started before ours, which answers CANCELLED; ending
/// first answers DEADLINE_EXCEEDED), cut to the server's maximum.
pub(super) fn call_deadline(headers: &http::HeaderMap, max: Duration) -> Duration {
    client_timeout(headers).map_or(max, |t| t.saturating_sub(AHEAD_OF_TONIC).min(max))
}

/// When a call must end, set by a layer that made it wait before [`Deadline`] saw it.
#[derive(Clone, Copy, Debug)]
pub(super) struct CallDeadline(pub tokio::time::Instant);

/// Ends a call that outlives its deadline with DEADLINE_EXCEEDED: the client's
/// `grpc-timeout`, cut to the server's maximum. The work in progress is dropped (an open
/// transaction rolls back).
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer {
    max: Duration,
}

impl DeadlineLayer {
    pub fn new(max: Duration) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            max: self.max,
        }
    }
}

#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
    max: Duration,
}

impl<S> Service<Request<Body>> for Deadline<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let deadline = match request.extensions().get::<CallDeadline>() {
            Some(CallDeadline(at)) => *at,
            None => tokio::time::Instant::now() + call_deadline(request.headers(), self.max),
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            tokio::time::timeout_at(deadline, future)
                .await
                .unwrap_or_else(|_| {
                    Ok(refusal(
                        Code::DeadlineExceeded,
                        "The call did not finish before its deadline",
                        "DEADLINE_EXCEEDED",
                    ))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit_and_nonsense_is_ignored() {
        let timeout = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().unwrap());
            client_timeout(&headers)
        };
        let cases = [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("3S", Some(Duration::from_secs(3))),
            ("250m", Some(Duration::from_millis(250))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("7n", Some(Duration::from_nanos(7))),
            ("123456789S", None),
            ("S", None),
            ("", None),
            ("10", None),
            ("10x", None),
            ("-1S", None),
            ("1.5S", None),
            ("+5S", None),
        ];
        for (value, expected) in cases {
            assert_eq!(timeout(value), expected, "{value:?}");
        }
        assert_eq!(client_timeout(&http::HeaderMap::new()), None);
    }

    #[test]
    fn only_our_calls_count_against_the_in_flight_limit() {
        assert!(counts_in_flight("/usermgmt.v1.UserManagement/GetUser"));
        assert!(counts_in_flight(
            "/usermgmt.v1.UserManagement/AcceptInvitation"
        ));
        assert!(!counts_in_flight("/grpc.health.v1.Health/Check"));
        assert!(!counts_in_flight(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
    }

    #[test]
    fn a_sensible_request_id_is_kept_and_others_replaced() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-request-id", "trace-42".parse().unwrap());
        assert_eq!(RequestId::of(&headers).0, "trace-42");
        headers.insert("x-request-id", "x".repeat(200).parse().unwrap());
        assert_eq!(RequestId::of(&headers).0.len(), 36);
        assert_eq!(RequestId::of(&http::HeaderMap::new()).0.len(), 36);
    }

    #[test]
    fn only_our_calls_but_accepting_need_a_credential() {
        assert!(requires_credential(
            "/usermgmt.v1.UserManagement/InviteUser"
        ));
        assert!(requires_credential("/usermgmt.v1.ApiTokens/CreateApiToken"));
        assert!(!requires_credential(
            "/usermgmt.v1.UserManagement/AcceptInvitation"
        ));
        assert!(!requires_credential("/grpc.health.v1.Health/Check"));
        assert!(!requires_credential(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
    }
}
