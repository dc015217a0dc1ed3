//! A pool of SMTP connections to one `smtp://` relay, each opened with `TCP_NODELAY`.
//!
//! lettre speaks SMTP on these connections (EHLO, STARTTLS, AUTH, the mail transaction),
//! but the notifier opens the TCP socket itself: lettre 0.11 leaves Nagle's algorithm on,
//! and it writes a message and its closing `<CRLF>.<CRLF>` as two writes. Nagle then holds
//! the closing dot back until the relay acknowledges the message, which the relay delays
//! (40 ms on Linux) because it has nothing to answer before the dot, so every email would
//! wait about 44 ms and one connection could carry some 23 emails a second.
//! See `docs/benchmarks.md`.
//!
//! Credentials travel only on an encrypted session, or to a relay on this machine (a local
//! relay or sidecar): a URL that would send them in clear to another host is refused at
//! start, and with opportunistic STARTTLS a connection on which STARTTLS did not happen
//! never sends AUTH.

use std::{borrow::Cow, net::IpAddr, time::Duration};

use deadpool::{
    Runtime,
    managed::{self, Metrics, Object, RecycleError, RecycleResult},
};
use lettre::{
    Message,
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::{AsyncSmtpConnection, Certificate, TlsParameters},
        extension::ClientId,
    },
};
use tokio::net::TcpStream;
use url::{Host, Url};

/// A pooled connection idle for longer than this is checked with NOOP before reuse.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartTls {
    Never,
    /// When the relay offers it.
    Opportunistic,
    Required,
}

/// How to reach and greet the relay, read from an `smtp://` URL.
pub struct Relay {
    host: String,
    port: u16,
    start_tls: StartTls,
    credentials: Option<Credentials>,
    /// The relay runs on this machine: credentials may go to it in clear.
    loopback: bool,
    hello_name: ClientId,
    timeout: Duration,
    /// How STARTTLS checks the relay's certificate, made once for every connection.
    tls: Option<TlsParameters>,
}

impl Relay {
    /// Reads `smtp://[user:password@]host[:port][/hello-name][?tls=required|opportunistic]`,
    /// as lettre's `from_url` does. `None` for any other scheme. `roots` are trusted for
    /// STARTTLS besides the public ones.
    pub fn from_url(
        url: &str,
        timeout: Duration,
        roots: Option<&Certificate>,
    ) -> Result<Option<Relay>, String> {
        let url = Url::parse(url).map_err(|e| e.to_string())?;
        if url.scheme() != "smtp" {
            return Ok(None);
        }
        let loopback = url.host().as_ref().is_some_and(is_loopback);
        let host = url.host_str().ok_or("the URL names no host")?.to_string();
        let start_tls = match url.query_pairs().find(|(key, _)| key == "tls") {
            None => StartTls::Never,
            Some((_, value)) if value == "required" => StartTls::Required,
            Some((_, value)) if value == "opportunistic" => StartTls::Opportunistic,
            Some(_) => return Err("tls must be `required` or `opportunistic`".into()),
        };
        let default_port = match start_tls {
            StartTls::Never => 25,
            _ => 587,
        };
        let hello_name = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_string()),
        };
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(Cow::into_owned)
                .map_err(|_| "the credentials are not UTF-8 once decoded".to_string())
        };
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(decode(url.username())?, decode(password)?)),
            None => None,
        };
        if credentials.is_some() && !credentials_protected(start_tls, loopback) {
            return Err(format!(
                "it carries credentials but no TLS, and {host} is not this machine: AUTH would \
                 travel in clear. Add `?tls=required` (STARTTLS), use smtps://, or relay \
                 through 127.0.0.1"
            ));
        }
        Ok(Some(Relay {
            port: url.port().unwrap_or(default_port),
            start_tls,
            credentials,
            loopback,
            hello_name,
            tls: match start_tls {
                StartTls::Never => None,
                _ => Some(tls_parameters(host.clone(), roots)?),
            },
            host,
            timeout,
        }))
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", self.host, self.port))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut connection =
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello_name)
                .await
                .map_err(|e| e.to_string())?;
        let start_tls = match self.start_tls {
            StartTls::Never => false,
            StartTls::Opportunistic => connection.can_starttls(),
            StartTls::Required => true,
        };
        if let Some(tls) = self.tls.as_ref().filter(|_| start_tls) {
            connection
                .starttls(tls.clone(), &self.hello_name)
                .await
                .map_err(|e| e.to_string())?;
        }
        if let Some(credentials) = &self.credentials {
            if !may_send_credentials(connection.is_encrypted(), self.loopback) {
                connection.abort().await;
                return Err(format!(
                    "{} did not offer STARTTLS: the credentials are sent only over TLS, \
                     so nothing was sent",
                    self.host
                ));
            }
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(connection)
    }
}

/// 127.0.0.0/8, ::1 (or 127.0.0.0/8 mapped into IPv6) or `localhost`.
fn is_loopback(host: &Host<&str>) -> bool {
    let ip = match host {
        // `smtp` is not a scheme the URL standard knows, so an IPv4 address stays text.
        Host::Domain(name) => match name.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return name.eq_ignore_ascii_case("localhost"),
        },
        Host::Ipv4(ip) => IpAddr::V4(*ip),
        Host::Ipv6(ip) => IpAddr::V6(*ip),
    };
    ip.to_canonical().is_loopback()
}

/// Whether credentials in a URL with this STARTTLS setting can only ever travel protected:
/// every session is encrypted, or the relay is on this machine. With opportunistic STARTTLS
/// the connection decides, see [`may_send_credentials`].
fn credentials_protected(start_tls: StartTls, loopback: bool) -> bool {
    loopback || start_tls != StartTls::Never
}

/// Whether AUTH may be sent on an open connection.
fn may_send_credentials(encrypted: bool, loopback: bool) -> bool {
    encrypted || loopback
}

/// How TLS checks the certificate of `host`: against the public roots and `roots`.
pub(super) fn tls_parameters(
    host: String,
    roots: Option<&Certificate>,
) -> Result<TlsParameters, String> {
    let mut parameters = TlsParameters::builder(host);
    if let Some(roots) = roots {
        parameters = parameters.add_root_certificate(roots.clone());
    }
    parameters.build().map_err(|e| e.to_string())
}

impl managed::Manager for Relay {
    type Type = AsyncSmtpConnection;
    type Error = String;

    async fn create(&self) -> Result<AsyncSmtpConnection, String> {
        self.open().await
    }

    async fn recycle(
        &self,
        connection: &mut AsyncSmtpConnection,
        metrics: &Metrics,
    ) -> RecycleResult<String> {
        if connection.has_broken() {
            return Err(RecycleError::message("the connection is broken"));
        }
        if metrics.last_used() > IDLE_CHECK_AFTER && !connection.test_connected().await {
            return Err(RecycleError::message(
                "the relay closed the idle connection",
            ));
        }
        Ok(())
    }
}

/// Up to `size` connections to the relay, opened when needed and kept for the next email.
pub struct RelayPool {
    pool: managed::Pool<Relay>,
    timeout: Duration,
}

impl RelayPool {
    pub fn new(relay: Relay, size: u32) -> Result<Self, String> {
        let timeout = relay.timeout;
        let pool = managed::Pool::builder(relay)
            .max_size(size.max(1) as usize)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(RelayPool { pool, timeout })
    }

    /// Hands the message to the relay. A connection that failed or timed out is closed,
    /// never put back in the pool. Only the relay's permanent (5xx) reply to the mail
    /// transaction itself refuses the email for good: failing to connect, greet or sign in
    /// says nothing about this email, and is tried again.
    pub async fn send(&self, message: &Message) -> Result<(), SendError> {
        let mut connection = self.pool.get().await.map_err(|e| {
            SendError::transient(match e {
                managed::PoolError::Backend(error) => error,
                managed::PoolError::Timeout(_) => "connecting to the mail server timed out".into(),
                other => other.to_string(),
            })
        })?;
        let sent = tokio::time::timeout(
            self.timeout,
            connection.send(message.envelope(), &message.formatted()),
        )
        .await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                drop(Object::take(connection));
                Err(SendError::from(error))
            }
            Err(_) => {
                drop(Object::take(connection));
                Err(SendError::transient(
                    "the mail server did not answer in time".into(),
                ))
            }
        }
    }
}

/// Why an email was not handed over, and whether trying again could help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    /// The mail server's reply or what went wrong; never a secret.
    pub message: String,
    /// The mail server refused the email for good (a 5xx reply), or it cannot be built.
    pub permanent: bool,
}

impl SendError {
    pub fn transient(message: String) -> Self {
        Self {
            message,
            permanent: false,
        }
    }

    pub fn permanent(message: String) -> Self {
        Self {
            message,
            permanent: true,
        }
    }
}

impl From<lettre::transport::smtp::Error> for SendError {
    /// A 5xx reply is permanent, except 53x: those refuse this service's login (530, 535,
    /// 538), not the email, and the email is sent once the credentials are fixed.
    fn from(error: lettre::transport::smtp::Error) -> Self {
        let refuses_login = error
            .status()
            .is_some_and(|code| code.to_string().starts_with("53"));
        Self {
            permanent: error.is_permanent() && !refuses_login,
            message: error.to_string(),
        }
    }
}

impl SendError {
    /// An error of an `smtps://` send, where lettre connects, greets and logs in inside the
    /// send: a 5xx may refuse the connection (a 554 greeting, a 5xx to EHLO) rather than the
    /// email, so only the replies that refuse a mailbox or the message (550–553) are
    /// permanent; the rest is tried again.
    pub fn from_implicit_tls(error: lettre::transport::smtp::Error) -> Self {
        let code = error
            .status()
            .and_then(|code| code.to_string().parse::<u16>().ok());
        Self {
            permanent: error.is_permanent() && code.is_some_and(refuses_the_email),
            message: error.to_string(),
        }
    }
}

/// Whether a reply refuses the email itself (its mailbox, its size, its address), not the
/// connection or the login.
fn refuses_the_email(code: u16) -> bool {
    (550..=553).contains(&code)
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_implicit_tls_only_a_refused_mailbox_or_message_is_permanent() {
        for code in [550, 551, 552, 553] {
            assert!(refuses_the_email(code), "{code}");
        }
        for code in [421, 450, 451, 452, 500, 501, 502, 530, 535, 538, 554] {
            assert!(!refuses_the_email(code), "{code}");
        }
    }

    fn relay(url: &str) -> Relay {
        Relay::from_url(url, Duration::from_secs(1), None)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn an_smtp_url_names_the_relay_its_port_tls_and_credentials() {
        let plain = relay("smtp://mail.example.com");
        assert_eq!((plain.port, plain.start_tls), (25, StartTls::Never));
        assert!(plain.credentials.is_none());

        let submission = relay("smtp://us%40er:p%2Fss@mail.example.com/me.example?tls=required");
        assert_eq!(
            (submission.port, submission.start_tls),
            (587, StartTls::Required)
        );
        assert_eq!(
            submission.credentials,
            Some(Credentials::new("us@er".into(), "p/ss".into()))
        );
        assert_eq!(submission.hello_name, ClientId::Domain("me.example".into()));

        let opportunistic = relay("smtp://127.0.0.1:2525?tls=opportunistic");
        assert_eq!(
            (opportunistic.port, opportunistic.start_tls),
            (2525, StartTls::Opportunistic)
        );
    }

    #[test]
    fn only_127_0_0_0_8_ipv6_loopback_and_localhost_are_this_machine() {
        let cases = [
            ("smtp://127.0.0.1", true),
            ("smtp://127.5.6.7:2525", true),
            ("smtp://[::1]", true),
            ("smtp://[::ffff:127.0.0.1]", true),
            ("smtp://localhost", true),
            ("smtp://LocalHost:25", true),
            ("smtp://0.0.0.0", false),
            ("smtp://10.0.0.1", false),
            ("smtp://[::ffff:10.0.0.1]", false),
            ("smtp://[fe80::1]", false),
            ("smtp://localhost.example.com", false),
            ("smtp://mail.example.com", false),
            ("smtp://2130706433", false),
        ];
        for (url, loopback) in cases {
            let url = Url::parse(url).unwrap();
            assert_eq!(is_loopback(&url.host().unwrap()), loopback, "{url}");
        }
    }

    #[test]
    fn credentials_travel_only_encrypted_or_to_this_machine() {
        use StartTls::*;
        // (STARTTLS setting, relay on this machine, URL accepted with credentials)
        let urls = [
            (Never, false, false),
            (Never, true, true),
            (Opportunistic, false, true),
            (Opportunistic, true, true),
            (Required, false, true),
            (Required, true, true),
        ];
        for (start_tls, loopback, accepted) in urls {
            assert_eq!(
                credentials_protected(start_tls, loopback),
                accepted,
                "{start_tls:?}, loopback {loopback}"
            );
        }
        // (session encrypted, relay on this machine, AUTH sent)
        let connections = [
            (false, false, false),
            (false, true, true),
            (true, false, true),
            (true, true, true),
        ];
        for (encrypted, loopback, sent) in connections {
            assert_eq!(
                may_send_credentials(encrypted, loopback),
                sent,
                "encrypted {encrypted}, loopback {loopback}"
            );
        }
    }

    #[test]
    fn a_url_with_credentials_and_no_tls_to_another_host_is_refused() {
        let timeout = Duration::from_secs(1);
        let error = Relay::from_url("smtp://user:secret-pass@mail.example.com", timeout, None)
            .err()
            .expect("AUTH would travel in clear");
        assert!(error.contains("no TLS"), "{error}");
        assert!(!error.contains("secret-pass"), "{error}");

        for url in [
            "smtp://user:pass@127.0.0.1:2525",
            "smtp://user:pass@localhost",
            "smtp://user:pass@[::1]",
            "smtp://user:pass@mail.example.com?tls=opportunistic",
            "smtp://user:pass@mail.example.com?tls=required",
            "smtp://mail.example.com",
        ] {
            assert!(
                Relay::from_url(url, timeout, None).is_ok(),
                "{url} is accepted"
            );
        }
        assert!(relay("smtp://user:pass@127.0.0.1").loopback);
        assert!(!relay("smtp://user:pass@mail.example.com?tls=opportunistic").loopback);
    }

    #[test]
    fn other_schemes_are_left_to_lettre_and_bad_urls_refused() {
        let timeout = Duration::from_secs(1);
        assert!(
            Relay::from_url("smtps://mail.example.com", timeout, None)
                .unwrap()
                .is_none()
        );
        assert!(Relay::from_url("smtp://mail.example.com?tls=sometimes", timeout, None).is_err());
        assert!(Relay::from_url("not a url", timeout, None).is_err());
    }
}
