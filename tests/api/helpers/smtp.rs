//! A real SMTP server in the test process (mailin-embedded on port 0), recording what it
//! accepts. It can play a mail server that is down, or one that fails some sends, or one
//! that requires STARTTLS (with a certificate from a private authority) and AUTH.

use std::{
    net::{IpAddr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use mail_parser::MessageParser;
use mailin_embedded::{AuthMechanism, Handler, Response, Server, SslConfig, response};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
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
    /// The user name and password AUTH accepts, when the server requires it.
    credentials: Option<(String, String)>,
    /// The user names of the AUTH attempts, in order.
    logins: Mutex<Vec<String>>,
    /// Recipients refused for good (550) when named in RCPT TO.
    unknown_mailboxes: Mutex<Vec<String>>,
}

#[derive(Clone)]
pub struct MailServer {
    pub addr: SocketAddr,
    url: String,
    /// The PEM file of the authority that issued the server's certificate, if it has one.
    pub ca_file: Option<PathBuf>,
    state: Arc<State>,
    count: watch::Receiver<usize>,
}

#[derive(Clone)]
struct Session {
    state: Arc<State>,
    count: Arc<watch::Sender<usize>>,
    data: Vec<u8>,
}

impl Session {
    fn login(&mut self, user: &str, password: &str) -> Response {
        self.state
            .logins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(user.to_string());
        match &self.state.credentials {
            Some((u, p)) if u == user && p == password => response::AUTH_OK,
            _ => response::INVALID_CREDENTIALS,
        }
    }
}

impl Handler for Session {
    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.login(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.login(user, password)
    }

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

    fn rcpt(&mut self, to: &str) -> Response {
        let unknown = self
            .state
            .unknown_mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|mailbox| to.trim_matches(['<', '>']).eq_ignore_ascii_case(mailbox));
        if unknown {
            self.state.refused.fetch_add(1, Ordering::SeqCst);
            return Response::custom(550, format!("5.1.1 <{to}>: no such mailbox here"));
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
        Self::serve(State::default(), None)
    }

    /// A server that offers STARTTLS with a certificate for `localhost` issued by a private
    /// authority (written to `dir`, see `ca_file`), and takes mail only after AUTH as
    /// `user` with `password`. Its URL requires STARTTLS and carries the credentials.
    pub fn start_tls(dir: &Path, user: &str, password: &str) -> Self {
        // mailin's TLS uses rustls's process-wide provider; another test may have set it.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let ca_file = write("ca.pem", ca_cert.pem());
        let tls = SslConfig::SelfSigned {
            cert_path: write("cert.pem", cert.pem()).display().to_string(),
            key_path: write("key.pem", key.serialize_pem()).display().to_string(),
        };
        let state = State {
            credentials: Some((user.to_string(), password.to_string())),
            ..State::default()
        };
        let mut server = Self::serve(state, Some(tls));
        server.url = format!(
            "smtp://{user}:{password}@localhost:{}?tls=required",
            server.addr.port()
        );
        server.ca_file = Some(ca_file);
        server
    }

    fn serve(state: State, tls: Option<SslConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP server");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(state);
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
        if let Some(tls) = tls {
            server
                .with_ssl(tls)
                .expect("the test certificate loads")
                .with_auth(AuthMechanism::Plain)
                .with_auth(AuthMechanism::Login);
        }
        std::thread::spawn(move || {
            server.serve().ok();
        });
        Self {
            addr,
            url: format!("smtp://{addr}"),
            ca_file: None,
            state,
            count,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The user names AUTH was tried with.
    pub fn logins(&self) -> Vec<String> {
        self.state
            .logins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Refuses every session until told otherwise.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Fails the next `n` emails with a temporary error (451 to MAIL FROM).
    pub fn fail_next(&self, n: u32) {
        self.state.failures_left.store(n, Ordering::SeqCst);
    }

    /// Refuses mail to `mailbox` for good (550 to RCPT TO).
    pub fn refuse_mailbox(&self, mailbox: &str) {
        self.state
            .unknown_mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(mailbox.to_string());
    }

    /// Takes mail for every mailbox again.
    pub fn accept_mailboxes(&self) {
        self.state
            .unknown_mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The same server, reached through `url` (a proxy in front of it).
    pub fn reached_at(&self, url: String) -> Self {
        Self {
            url,
            ..self.clone()
        }
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
