//! Fair shares of the server between callers. Each caller — one credential, or one peer
//! address for calls that carry none — has at most `per_caller` calls in progress; its
//! further calls wait their turn in the caller's own queue, so a client that floods waits
//! behind itself instead of in front of everyone else. A call that waits holds nothing of
//! the server's in-flight limit, costs no database work and no CPU until its turn, and
//! waits no longer than its deadline. A caller with more than `max_queued` calls waiting is
//! refused with RESOURCE_EXHAUSTED.
//!
//! Queueing, rather than refusing at once, matters: a refused call is answered in
//! microseconds and a flooding client asks again at once, so refusals at tens of thousands
//! a second would take the CPU from every other caller; a waiting call costs nothing. For
//! the same reason a call whose credential was refused is answered `refusal_delay` late,
//! keeping its caller's place (not the server's in-flight limit, which it has left by then):
//! a client repeating a bad credential gets a few answers a second.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tonic::{Code, body::Body, transport::server::TcpConnectInfo};
use tower::{Layer, Service};

use super::layers::{CallDeadline, RefusedCredential, call_deadline, counts_in_flight, refusal};

/// Who a call is from, as far as sharing goes: a keyed hash of its `authorization` value
/// (never the value itself), or its peer address when it carries none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum CallerKey {
    Credential(u64),
    Peer(Option<IpAddr>),
}

impl CallerKey {
    fn of(request: &Request<Body>, hasher: &RandomState) -> Self {
        match request.headers().get(http::header::AUTHORIZATION) {
            Some(value) => Self::Credential(hasher.hash_one(value.as_bytes())),
            None => Self::Peer(
                request
                    .extensions()
                    .get::<TcpConnectInfo>()
                    .and_then(TcpConnectInfo::remote_addr)
                    .map(|addr| addr.ip()),
            ),
        }
    }
}

/// One caller's share: its calls in progress and its queue.
struct Share {
    running: Arc<Semaphore>,
    /// Calls holding this share: running or waiting.
    calls: AtomicUsize,
}

struct Shares {
    by_caller: Mutex<HashMap<CallerKey, Arc<Share>>>,
    per_caller: usize,
    max_queued: usize,
    hasher: RandomState,
}

/// A call's hold on its caller's share; the last call of a caller removes the share, so
/// the map holds only callers with calls in progress or waiting.
struct Hold {
    shares: Arc<Shares>,
    key: CallerKey,
    share: Arc<Share>,
}

impl Shares {
    /// Joins the caller's share, unless its queue is full.
    fn join(self: &Arc<Self>, key: CallerKey) -> Option<Hold> {
        let mut by_caller = self.by_caller.lock().unwrap_or_else(|e| e.into_inner());
        let share = by_caller
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Share {
                    running: Arc::new(Semaphore::new(self.per_caller)),
                    calls: AtomicUsize::new(0),
                })
            })
            .clone();
        // Under the map's lock, so that a share is never removed while a call joins it.
        if share.calls.load(Ordering::Relaxed) >= self.per_caller + self.max_queued {
            return None;
        }
        share.calls.fetch_add(1, Ordering::Relaxed);
        Some(Hold {
            shares: self.clone(),
            key,
            share,
        })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut by_caller = self
            .shares
            .by_caller
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.share.calls.fetch_sub(1, Ordering::Relaxed) == 1 {
            by_caller.remove(&self.key);
        }
    }
}

/// Gives each caller at most `per_caller` calls in progress and a queue of `max_queued`, and
/// answers a refused credential `refusal_delay` late. `per_caller` 0: no sharing (every call
/// goes straight on, refusals still late).
#[derive(Clone)]
pub struct FairShareLayer {
    shares: Option<Arc<Shares>>,
    max_wait: Duration,
    refusal_delay: Duration,
}

impl FairShareLayer {
    /// `max_wait` is the server's longest call: no call waits longer than its deadline.
    pub fn new(
        per_caller: usize,
        max_queued: usize,
        max_wait: Duration,
        refusal_delay: Duration,
    ) -> Self {
        Self {
            shares: (per_caller > 0).then(|| {
                Arc::new(Shares {
                    by_caller: Mutex::default(),
                    per_caller,
                    max_queued,
                    hasher: RandomState::new(),
                })
            }),
            max_wait,
            refusal_delay,
        }
    }
}

impl<S> Layer<S> for FairShareLayer {
    type Service = FairShare<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FairShare {
            inner,
            shares: self.shares.clone(),
            max_wait: self.max_wait,
            refusal_delay: self.refusal_delay,
        }
    }
}

#[derive(Clone)]
pub struct FairShare<S> {
    inner: S,
    shares: Option<Arc<Shares>>,
    max_wait: Duration,
    refusal_delay: Duration,
}

impl<S> Service<Request<Body>> for FairShare<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        if !counts_in_flight(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        // The clone that was polled ready serves this call; the fresh one waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let hold = match &self.shares {
            None => None,
            Some(shares) => match shares.join(CallerKey::of(&request, &shares.hasher)) {
                Some(hold) => Some(hold),
                None => {
                    // Not logged per call: a flood must not become a flood of log lines.
                    tracing::debug!(method = %request.uri().path(), "shed: the caller's queue is full");
                    return Box::pin(std::future::ready(Ok(refusal(
                        Code::ResourceExhausted,
                        "Too many calls of this caller are waiting; retry later",
                        "CALLER_BUSY",
                    ))));
                }
            },
        };
        // The wait counts against the call's deadline: the layers inside keep it.
        let deadline = Instant::now() + call_deadline(request.headers(), self.max_wait);
        request.extensions_mut().insert(CallDeadline(deadline));
        let refusal_delay = self.refusal_delay;
        Box::pin(async move {
            let turn = match &hold {
                Some(hold) => {
                    let running = hold.share.running.clone();
                    match tokio::time::timeout_at(deadline, running.acquire_owned()).await {
                        Ok(Ok(turn)) => Some(turn),
                        _ => {
                            return Ok(refusal(
                                Code::DeadlineExceeded,
                                "The call did not finish before its deadline",
                                "DEADLINE_EXCEEDED",
                            ));
                        }
                    }
                }
                None => None,
            };
            let response = inner.call(request).await;
            if let Ok(response) = &response
                && response.extensions().get::<RefusedCredential>().is_some()
            {
                // Late, still holding the caller's turn; the layers inside, the in-flight
                // limit among them, are done with the call.
                tokio::time::sleep_until(deadline.min(Instant::now() + refusal_delay)).await;
            }
            drop(turn);
            drop(hold);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(per_caller: usize, max_queued: usize) -> Arc<Shares> {
        Arc::new(Shares {
            by_caller: Mutex::default(),
            per_caller,
            max_queued,
            hasher: RandomState::new(),
        })
    }

    #[test]
    fn a_caller_holds_at_most_its_share_and_queue_and_others_are_untouched() {
        let shares = shares(2, 1);
        let flood = CallerKey::Credential(1);
        let holds: Vec<_> = (0..3).map(|_| shares.join(flood).unwrap()).collect();
        assert!(shares.join(flood).is_none(), "a fourth call of one caller");
        let other = shares.join(CallerKey::Credential(2));
        assert!(other.is_some(), "another caller is refused");
        drop(holds);
        assert!(shares.join(flood).is_some());
    }

    #[test]
    fn a_caller_without_calls_leaves_no_share_behind() {
        let shares = shares(4, 4);
        let key = CallerKey::Peer(None);
        let first = shares.join(key).unwrap();
        let second = shares.join(key).unwrap();
        drop(first);
        assert_eq!(shares.by_caller.lock().unwrap().len(), 1);
        drop(second);
        assert!(shares.by_caller.lock().unwrap().is_empty());
    }

    #[test]
    fn callers_are_told_apart_by_credential_and_by_peer_without_one() {
        let hasher = RandomState::new();
        let request = |authorization: Option<&str>| {
            let mut request = Request::new(Body::empty());
            if let Some(value) = authorization {
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, value.parse().unwrap());
            }
            CallerKey::of(&request, &hasher)
        };
        assert_eq!(request(Some("APIKey a")), request(Some("APIKey a")));
        assert_ne!(request(Some("APIKey a")), request(Some("APIKey b")));
        assert_eq!(request(None), CallerKey::Peer(None));
    }
}
