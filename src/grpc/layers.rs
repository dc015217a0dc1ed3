//! Tower layers in front of every service: the credential check and the per-call log line.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tonic::{Status, body::Body};
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

/// Resolves the `authorization` metadata to a [`crate::service::Caller`] in the request's
/// extensions, or answers UNAUTHENTICATED without reaching the handler.
#[derive(Clone)]
pub struct AuthLayer {
    users: UserService,
}

impl AuthLayer {
    pub fn new(users: UserService) -> Self {
        Self { users }
    }
}

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
            match users.authenticate(authorization).await {
                Ok(mut caller) => {
                    if let Some(RequestId(id)) = request.extensions().get::<RequestId>() {
                        caller.request_id = id.clone();
                    }
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(error) => Ok(Status::from(error).into_http()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
