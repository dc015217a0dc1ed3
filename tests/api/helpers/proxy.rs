//! A real TCP proxy in the test process (tokio, port 0) between the service and its
//! PostgreSQL server. `cut()` closes every connection through it and closes each new one as
//! soon as it is accepted, as a database that went away; `restore()` lets connections
//! through again.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

struct State {
    down: AtomicBool,
    /// Bumped by every cut: each connection ends when it changes.
    cuts: watch::Sender<u64>,
    /// Connections currently open through the proxy.
    open: AtomicUsize,
}

impl Proxy {
    /// A proxy to `upstream`, listening on 127.0.0.1 port 0.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(State {
            down: AtomicBool::new(false),
            cuts: watch::channel(0).0,
            open: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, upstream, state.clone()));
        Proxy {
            addr,
            upstream,
            state,
            accept,
        }
    }

    /// A proxy to the PostgreSQL server of `USERMGMT_TEST_DATABASE_URL`.
    pub async fn to_test_postgres() -> Proxy {
        let url = std::env::var("USERMGMT_TEST_DATABASE_URL")
            .expect("needs PostgreSQL: set USERMGMT_TEST_DATABASE_URL");
        let url = url::Url::parse(&url).expect("a database URL");
        let host = url.host_str().expect("a host in the database URL");
        let port = url.port().unwrap_or(5432);
        let upstream = tokio::net::lookup_host((host, port))
            .await
            .expect("resolve the database host")
            .next()
            .expect("an address for the database host");
        Proxy::start(upstream).await
    }

    /// `url` (a database on the proxied server) with its host and port replaced by the
    /// proxy's.
    pub fn route(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).expect("a database URL");
        assert_eq!(
            url.port().unwrap_or(5432),
            self.upstream.port(),
            "the URL names the proxied server"
        );
        url.set_host(Some(&self.addr.ip().to_string()))
            .expect("a URL with a host");
        url.set_port(Some(self.addr.port()))
            .expect("a URL with a port");
        url.to_string()
    }

    /// Closes every connection through the proxy, and every new one as it is accepted.
    pub fn cut(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        self.state.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Lets new connections through again.
    pub fn restore(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Connections still open end too.
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: Arc<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if state.down.load(Ordering::SeqCst) {
            // The database is away: the connection closes before a byte is exchanged.
            drop(client);
            continue;
        }
        tokio::spawn(relay(client, upstream, state.clone()));
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, state: Arc<State>) {
    let mut cuts = state.cuts.subscribe();
    cuts.mark_unchanged();
    // A cut between the accept and the subscription above.
    if state.down.load(Ordering::SeqCst) {
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    client.set_nodelay(true).ok();
    server.set_nodelay(true).ok();
    state.open.fetch_add(1, Ordering::SeqCst);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cuts.changed() => {}
    }
    state.open.fetch_sub(1, Ordering::SeqCst);
    // Both sockets close here, as a crashed or restarted server's would.
}
