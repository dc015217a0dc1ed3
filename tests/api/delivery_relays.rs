//! Mail relays that misbehave at the TCP level, on port 0, for the delivery tests: a gate
//! in front of the real test mail server that drops every connection while it is closed,
//! and a relay that accepts connections and then never says a word.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
};

use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// A TCP proxy to `target` that, while closed, accepts each connection and drops it at once
/// (the relay hangs up before its greeting). Aborted when dropped.
pub struct RelayGate {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    dropped: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

impl RelayGate {
    /// A closed gate in front of `target`.
    pub async fn closed(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU32::new(0));
        let task = tokio::spawn({
            let (open, dropped) = (open.clone(), dropped.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        dropped.fetch_add(1, Ordering::SeqCst);
                        drop(client);
                        continue;
                    }
                    tokio::spawn(async move {
                        if let Ok(mut relay) = TcpStream::connect(target).await {
                            copy_bidirectional(&mut client, &mut relay).await.ok();
                        }
                    });
                }
            }
        });
        Self {
            addr,
            open,
            dropped,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// How many connections it dropped while closed.
    pub fn dropped(&self) -> u32 {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for RelayGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A relay that accepts connections, holds them open and never answers. Aborted, with
/// every connection it holds, when dropped.
pub struct StallingRelay {
    pub addr: SocketAddr,
    accepted: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

impl StallingRelay {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU32::new(0));
        let task = tokio::spawn({
            let accepted = accepted.clone();
            async move {
                let mut held = Vec::new();
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    held.push(client);
                }
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for StallingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
