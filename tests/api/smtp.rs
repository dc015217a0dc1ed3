//! A real SMTP server in the test process (mailin-embedded on port 0), recording what it
//! accepts. It can play a mail server that is down, or one that fails some sends.

use std::{
    net::{IpAddr, SocketAddr, TcpListener},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use mail_parser::MessageParser;
use mailin_embedded::{Handler, Response, Server, response};
use tokio::sync::watch;

/// One email the server accepted, decoded.
#[derive(Clone, Debug)]
pub struct Mail {
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Mail {
    /// The secret of the accept link in the text part.
    pub fn token(&self) -> String {
        let start = self
            .text
            .find("token=")
            .expect("an accept link in the email")
            + 6;
        self.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

#[derive(Default)]
struct State {
    accepted: Mutex<Vec<Mail>>,
    down: AtomicBool,
    failures_left: AtomicU32,
    refused: AtomicU32,
}

#[derive(Clone)]
pub struct MailServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    count: watch::Receiver<usize>,
}

#[derive(Clone)]
struct Session {
    state: Arc<State>,
    count: Arc<watch::Sender<usize>>,
    data: Vec<u8>,
}

impl Handler for Session {
    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> Response {
        if self.state.down.load(Ordering::SeqCst) {
            self.state.refused.fetch_add(1, Ordering::SeqCst);
            return response::NO_SERVICE;
        }
        response::OK
    }

    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        let failing = self
            .state
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if failing {
            self.state.refused.fetch_add(1, Ordering::SeqCst);
            return response::INTERNAL_ERROR;
        }
        response::OK
    }

    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let Some(parsed) = MessageParser::default().parse(&self.data) else {
            return response::TRANSACTION_FAILED;
        };
        let mail = Mail {
            message_id: parsed.message_id().unwrap_or_default().to_string(),
            to: parsed
                .to()
                .and_then(|to| to.first())
                .and_then(|address| address.address())
                .unwrap_or_default()
                .to_string(),
            subject: parsed.subject().unwrap_or_default().to_string(),
            text: parsed.body_text(0).unwrap_or_default().to_string(),
            html: parsed.body_html(0).unwrap_or_default().to_string(),
        };
        let mut accepted = self
            .state
            .accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        accepted.push(mail);
        self.count.send_replace(accepted.len());
        response::OK
    }
}

impl MailServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP server");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (count_tx, count) = watch::channel(0);
        let mut server = Server::new(Session {
            state: state.clone(),
            count: Arc::new(count_tx),
            data: Vec::new(),
        });
        server
            .with_name("mail.test")
            .with_num_threads(16)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            server.serve().ok();
        });
        Self { addr, state, count }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Refuses every session until told otherwise.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Fails the next `n` emails with a temporary error (451 to MAIL FROM).
    pub fn fail_next(&self, n: u32) {
        self.state.failures_left.store(n, Ordering::SeqCst);
    }

    /// How many sessions or emails it refused.
    pub fn refused(&self) -> u32 {
        self.state.refused.load(Ordering::SeqCst)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.state
            .accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `n` emails were accepted; fails the test after 20 s.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let mut count = self.count.clone();
        tokio::time::timeout(Duration::from_secs(20), count.wait_for(|seen| *seen >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} emails did not arrive; got {:?}", self.mails()))
            .expect("the mail server runs");
        self.mails()
    }
}
