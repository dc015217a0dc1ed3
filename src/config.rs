//! Command line and settings: every setting is a flag with an environment-variable fallback.
//! Settings come in sections (server, database, invitations, mail, notifier, authentication)
//! so that each part of the service receives only the section it needs. Secrets are held as
//! `SecretString`, so the derived `Debug` never prints them.

use std::{convert::Infallible, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

#[derive(Debug, Parser)]
#[command(
    name = "usermgmt",
    version,
    about = "Manages the users of a cloud account over gRPC"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations, then serve gRPC (the default).
    Serve,
    /// Create an account with one active administrator and print its API token as JSON.
    Bootstrap {
        /// The new account's name.
        #[arg(long)]
        account_name: String,
        /// The administrator's email address.
        #[arg(long)]
        admin_email: String,
        /// The administrator's display name (defaults to the email's local part).
        #[arg(long)]
        admin_name: Option<String>,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Issue an API token for an active member of an account (an operator's way in); prints
    /// one JSON line with the secret, shown once.
    IssueToken {
        /// The account (a UUID).
        #[arg(long)]
        account_id: uuid::Uuid,
        /// The member's email address.
        #[arg(long)]
        email: String,
        /// The token's role, at most the member's: administrators, engineers,
        /// purge-and-prefetch-api-web, purge-and-prefetch-api, users. Default: the member's.
        #[arg(long)]
        role: Option<String>,
        /// The token's name.
        #[arg(long, default_value = "issued by an operator")]
        name: String,
    },
    /// Ask the local server's health service whether it is serving; exit 0 if so.
    Healthcheck,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Every setting, in sections; each part of the service receives only its own section.
// A field shorter than its flag (`database.url` for `--database-url`) names its `id`, `long`
// and `value_name`, so flags, `--help` and parse errors read exactly as before and argument
// ids stay unique across sections.
#[derive(Clone, Debug, Args)]
pub struct Settings {
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub invitations: InvitationSettings,
    #[command(flatten)]
    pub mail: MailSettings,
    #[command(flatten)]
    pub notifier: NotifierSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
}

/// Where the gRPC server listens and how the process logs.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerSettings {
    /// gRPC listen address.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_LISTEN_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen_addr: SocketAddr,

    /// Log format: `text` or `json` (the level comes from RUST_LOG, default `info`).
    #[arg(
        long,
        global = true,
        env = "USERMGMT_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,

    /// Longest time a call may take: a client's shorter `grpc-timeout` is honoured, a longer
    /// one is cut to this; an expired call ends with DEADLINE_EXCEEDED.
    #[arg(long, global = true, env = "USERMGMT_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Calls the whole server works on at once; more are refused at once with
    /// RESOURCE_EXHAUSTED. Health checks and reflection are not counted. `0`: no limit.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_MAX_IN_FLIGHT",
        default_value_t = 64
    )]
    pub max_in_flight: usize,

    /// Calls one connection may have in progress at once; more are refused at once with
    /// RESOURCE_EXHAUSTED. `0`: no limit.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_MAX_CALLS_PER_CONNECTION",
        default_value_t = 8
    )]
    pub max_calls_per_connection: usize,

    /// HTTP/2 streams (calls) a client may open at once on one connection.
    #[arg(long, global = true, env = "USERMGMT_MAX_CONCURRENT_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// Largest request message accepted, in bytes (suffixes `KiB`, `MiB`); a larger one is
    /// refused with OUT_OF_RANGE.
    #[arg(long, global = true, env = "USERMGMT_MAX_MESSAGE_SIZE", default_value = "4MiB", value_parser = parse_size)]
    pub max_message_size: usize,

    /// How often an HTTP/2 ping checks that a client's connection is alive.
    #[arg(long, global = true, env = "USERMGMT_HTTP2_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long to wait for the ping's answer before closing the connection.
    #[arg(long, global = true, env = "USERMGMT_HTTP2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// Idle time before TCP keepalive probes start on a client's connection.
    #[arg(long, global = true, env = "USERMGMT_TCP_KEEPALIVE", default_value = "60s", value_parser = parse_duration)]
    pub tcp_keepalive: Duration,
}

#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseSettings {
    /// `sqlite://…` or `postgres://…`.
    // A secret: the URL may carry a password.
    #[arg(
        id = "database_url",
        long = "database-url",
        value_name = "DATABASE_URL",
        global = true,
        env = "USERMGMT_DATABASE_URL",
        default_value = "sqlite://usermgmt.db?mode=rwc",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub url: SecretString,
}

#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Invitations")]
pub struct InvitationSettings {
    /// How long an invitation link stays valid, e.g. `24h`, `90m`.
    #[arg(
        id = "invitation_ttl",
        long = "invitation-ttl",
        value_name = "INVITATION_TTL",
        global = true,
        env = "USERMGMT_INVITATION_TTL",
        default_value = "24h",
        value_parser = parse_duration
    )]
    pub ttl: Duration,
}

/// How emails are composed and handed over: an SMTP relay, or `.eml` files.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Mail")]
pub struct MailSettings {
    /// SMTP server, e.g. `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://…`
    /// (TLS) or `smtp://host:25` (plain). Unset: emails are written as `.eml` files.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_SMTP_URL",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub smtp_url: Option<SecretString>,

    /// Folder for `.eml` files when no SMTP URL is set.
    #[arg(
        id = "mail_dir",
        long = "mail-dir",
        value_name = "MAIL_DIR",
        global = true,
        env = "USERMGMT_MAIL_DIR",
        default_value = "./mail"
    )]
    pub dir: PathBuf,

    /// Sender of every email.
    #[arg(
        id = "mail_from",
        long = "mail-from",
        value_name = "MAIL_FROM",
        global = true,
        env = "USERMGMT_MAIL_FROM",
        default_value = "usermgmt <no-reply@localhost>"
    )]
    pub from: String,

    /// Base of the accept link; the secret is appended as `?token=`.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_ACCEPT_URL",
        default_value = "http://localhost:8080/accept-invite"
    )]
    pub accept_url: String,

    /// Pooled SMTP connections, and emails sent at once.
    #[arg(long, global = true, env = "USERMGMT_SMTP_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub smtp_pool_size: u32,

    /// Connect and command timeout of the SMTP client.
    #[arg(long, global = true, env = "USERMGMT_SMTP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub smtp_timeout: Duration,

    /// PEM file of root certificates to trust for the SMTP server's TLS, besides the public
    /// ones: for a relay whose certificate a private authority issued.
    #[arg(long, global = true, env = "USERMGMT_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,
}

/// The outbox delivery loop: whether it runs here, how it polls and retries.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Notifier")]
pub struct NotifierSettings {
    /// Run the notifier (outbox delivery) in this process.
    #[arg(
        id = "notifier",
        long = "notifier",
        value_name = "NOTIFIER",
        global = true,
        env = "USERMGMT_NOTIFIER",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub enabled: bool,

    /// How often the notifier looks for emails committed by other replicas.
    #[arg(
        id = "notifier_poll_interval",
        long = "notifier-poll-interval",
        value_name = "NOTIFIER_POLL_INTERVAL",
        global = true,
        env = "USERMGMT_NOTIFIER_POLL_INTERVAL",
        default_value = "5s",
        value_parser = parse_duration
    )]
    pub poll_interval: Duration,

    /// First retry delay of a failed send; it doubles per attempt (with jitter) up to the cap.
    #[arg(
        id = "notifier_retry_initial",
        long = "notifier-retry-initial",
        value_name = "NOTIFIER_RETRY_INITIAL",
        global = true,
        env = "USERMGMT_NOTIFIER_RETRY_INITIAL",
        default_value = "2s",
        value_parser = parse_duration
    )]
    pub retry_initial: Duration,

    /// Longest delay between two attempts of one email.
    #[arg(
        id = "notifier_retry_max",
        long = "notifier-retry-max",
        value_name = "NOTIFIER_RETRY_MAX",
        global = true,
        env = "USERMGMT_NOTIFIER_RETRY_MAX",
        default_value = "10m",
        value_parser = parse_duration
    )]
    pub retry_max: Duration,

    /// Attempts before an email is marked dead (and logged at error level).
    #[arg(
        id = "notifier_max_attempts",
        long = "notifier-max-attempts",
        value_name = "NOTIFIER_MAX_ATTEMPTS",
        global = true,
        env = "USERMGMT_NOTIFIER_MAX_ATTEMPTS",
        default_value_t = 12,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_attempts: u32,
}

/// How `Bearer` JWTs are verified; with neither setting, JWTs are refused.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Authentication")]
pub struct AuthSettings {
    /// Verifies `Bearer` JWTs signed with HS256 and this shared secret (at least 32 bytes).
    #[arg(
        long,
        global = true,
        env = "USERMGMT_JWT_SECRET",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub jwt_secret: Option<SecretString>,

    /// Verifies `Bearer` JWTs signed with RS256 or EdDSA: the PEM public key's file.
    #[arg(long, global = true, env = "USERMGMT_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(raw).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

/// A number of bytes, optionally with a binary suffix: `4194304`, `512KiB`, `4MiB`.
fn parse_size(raw: &str) -> Result<usize, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => raw.split_at(at),
        None => (raw, ""),
    };
    let multiplier = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        other => return Err(format!("unknown unit `{other}`: use B, KiB or MiB")),
    };
    let size = digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{raw}` is not a size in bytes"))?;
    if size == 0 {
        return Err("must be larger than zero".into());
    }
    Ok(size)
}

/// Any text, held so that `Debug` never prints it.
fn parse_secret(raw: &str) -> Result<SecretString, Infallible> {
    Ok(SecretString::from(raw))
}

impl Settings {
    /// Settings for tests and embedding: a database URL, everything else default.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        let mut settings = Cli::parse_from(["usermgmt"]).settings;
        settings.database.url = SecretString::from(database_url.into());
        settings.server.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use secrecy::ExposeSecret;

    use super::*;

    /// Every setting's environment variable (the names other programs rely on), its flag and
    /// the `--help` section it is listed under.
    const SETTINGS: [(&str, &str, &str); 26] = [
        ("USERMGMT_LISTEN_ADDR", "listen-addr", "Server"),
        ("USERMGMT_LOG_FORMAT", "log-format", "Server"),
        ("USERMGMT_REQUEST_TIMEOUT", "request-timeout", "Server"),
        ("USERMGMT_MAX_IN_FLIGHT", "max-in-flight", "Server"),
        (
            "USERMGMT_MAX_CALLS_PER_CONNECTION",
            "max-calls-per-connection",
            "Server",
        ),
        (
            "USERMGMT_MAX_CONCURRENT_STREAMS",
            "max-concurrent-streams",
            "Server",
        ),
        ("USERMGMT_MAX_MESSAGE_SIZE", "max-message-size", "Server"),
        (
            "USERMGMT_HTTP2_KEEPALIVE_INTERVAL",
            "http2-keepalive-interval",
            "Server",
        ),
        (
            "USERMGMT_HTTP2_KEEPALIVE_TIMEOUT",
            "http2-keepalive-timeout",
            "Server",
        ),
        ("USERMGMT_TCP_KEEPALIVE", "tcp-keepalive", "Server"),
        ("USERMGMT_DATABASE_URL", "database-url", "Database"),
        ("USERMGMT_INVITATION_TTL", "invitation-ttl", "Invitations"),
        ("USERMGMT_SMTP_URL", "smtp-url", "Mail"),
        ("USERMGMT_MAIL_DIR", "mail-dir", "Mail"),
        ("USERMGMT_MAIL_FROM", "mail-from", "Mail"),
        ("USERMGMT_ACCEPT_URL", "accept-url", "Mail"),
        ("USERMGMT_SMTP_POOL_SIZE", "smtp-pool-size", "Mail"),
        ("USERMGMT_SMTP_TIMEOUT", "smtp-timeout", "Mail"),
        ("USERMGMT_SMTP_CA_FILE", "smtp-ca-file", "Mail"),
        ("USERMGMT_NOTIFIER", "notifier", "Notifier"),
        (
            "USERMGMT_NOTIFIER_POLL_INTERVAL",
            "notifier-poll-interval",
            "Notifier",
        ),
        (
            "USERMGMT_NOTIFIER_RETRY_INITIAL",
            "notifier-retry-initial",
            "Notifier",
        ),
        (
            "USERMGMT_NOTIFIER_RETRY_MAX",
            "notifier-retry-max",
            "Notifier",
        ),
        (
            "USERMGMT_NOTIFIER_MAX_ATTEMPTS",
            "notifier-max-attempts",
            "Notifier",
        ),
        ("USERMGMT_JWT_SECRET", "jwt-secret", "Authentication"),
        (
            "USERMGMT_JWT_PUBLIC_KEY_FILE",
            "jwt-public-key-file",
            "Authentication",
        ),
    ];

    const SECRET_VARIABLES: [&str; 3] = [
        "USERMGMT_DATABASE_URL",
        "USERMGMT_SMTP_URL",
        "USERMGMT_JWT_SECRET",
    ];

    #[test]
    fn defaults_match_the_documented_ones() {
        let cli = Cli::try_parse_from(["usermgmt"]).unwrap();
        assert!(cli.command.is_none());
        let Settings {
            server,
            database,
            invitations,
            mail,
            notifier,
            auth,
        } = cli.settings;
        assert_eq!(server.listen_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(server.log_format, LogFormat::Text);
        assert_eq!(server.request_timeout, Duration::from_secs(30));
        assert_eq!(server.max_in_flight, 64);
        assert_eq!(server.max_calls_per_connection, 8);
        assert_eq!(server.max_concurrent_streams, 100);
        assert_eq!(server.max_message_size, 4 << 20);
        assert_eq!(server.http2_keepalive_interval, Duration::from_secs(60));
        assert_eq!(server.http2_keepalive_timeout, Duration::from_secs(20));
        assert_eq!(server.tcp_keepalive, Duration::from_secs(60));
        assert_eq!(
            database.url.expose_secret(),
            "sqlite://usermgmt.db?mode=rwc"
        );
        assert_eq!(invitations.ttl, Duration::from_secs(24 * 3600));
        assert!(mail.smtp_url.is_none());
        assert_eq!(mail.dir, PathBuf::from("./mail"));
        assert_eq!(mail.from, "usermgmt <no-reply@localhost>");
        assert_eq!(mail.accept_url, "http://localhost:8080/accept-invite");
        assert_eq!(mail.smtp_pool_size, 8);
        assert_eq!(mail.smtp_timeout, Duration::from_secs(10));
        assert!(mail.smtp_ca_file.is_none());
        assert!(notifier.enabled);
        assert_eq!(notifier.poll_interval, Duration::from_secs(5));
        assert_eq!(notifier.retry_initial, Duration::from_secs(2));
        assert_eq!(notifier.retry_max, Duration::from_secs(600));
        assert_eq!(notifier.max_attempts, 12);
        assert!(auth.jwt_secret.is_none());
        assert!(auth.jwt_public_key_file.is_none());
    }

    #[test]
    fn every_environment_variable_names_its_flag_in_its_section() {
        let command = Cli::command();
        for (env, long, heading) in SETTINGS {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_env().is_some_and(|name| name == env))
                .unwrap_or_else(|| panic!("no flag reads {env}"));
            assert_eq!(arg.get_long(), Some(long), "{env}");
            assert_eq!(arg.get_help_heading(), Some(heading), "{env}");
            assert!(arg.is_global_set(), "{env} is global");
            assert_eq!(
                arg.is_hide_env_values_set(),
                SECRET_VARIABLES.contains(&env),
                "{env} hides its value in --help exactly when it is a secret"
            );
        }
        let settings_with_env = command
            .get_arguments()
            .filter(|arg| arg.get_env().is_some())
            .count();
        assert_eq!(settings_with_env, SETTINGS.len(), "every setting is listed");
    }

    #[test]
    fn every_flag_sets_its_field_of_its_section() {
        let cli = Cli::try_parse_from([
            "usermgmt",
            "--listen-addr=0.0.0.0:6000",
            "--log-format=json",
            "--request-timeout=5s",
            "--max-in-flight=0",
            "--max-calls-per-connection=2",
            "--max-concurrent-streams=50",
            "--max-message-size=512KiB",
            "--http2-keepalive-interval=30s",
            "--http2-keepalive-timeout=5s",
            "--tcp-keepalive=2m",
            "--database-url=postgres://db/users",
            "--invitation-ttl=90m",
            "--smtp-url=smtp://relay:25",
            "--mail-dir=/var/mail",
            "--mail-from=Acme <no-reply@acme.test>",
            "--accept-url=https://console.example/accept",
            "--smtp-pool-size=3",
            "--smtp-timeout=4s",
            "--smtp-ca-file=/etc/ca.pem",
            "--notifier=false",
            "--notifier-poll-interval=7s",
            "--notifier-retry-initial=3s",
            "--notifier-retry-max=1h",
            "--notifier-max-attempts=4",
            "--jwt-secret=an HS256 secret of at least 32 bytes",
            "--jwt-public-key-file=/etc/jwt.pem",
        ])
        .unwrap();
        let Settings {
            server,
            database,
            invitations,
            mail,
            notifier,
            auth,
        } = cli.settings;
        assert_eq!(server.listen_addr.to_string(), "0.0.0.0:6000");
        assert_eq!(server.log_format, LogFormat::Json);
        assert_eq!(server.request_timeout, Duration::from_secs(5));
        assert_eq!(server.max_in_flight, 0);
        assert_eq!(server.max_calls_per_connection, 2);
        assert_eq!(server.max_concurrent_streams, 50);
        assert_eq!(server.max_message_size, 512 << 10);
        assert_eq!(server.http2_keepalive_interval, Duration::from_secs(30));
        assert_eq!(server.http2_keepalive_timeout, Duration::from_secs(5));
        assert_eq!(server.tcp_keepalive, Duration::from_secs(120));
        assert_eq!(database.url.expose_secret(), "postgres://db/users");
        assert_eq!(invitations.ttl, Duration::from_secs(5400));
        let smtp_url = mail.smtp_url.as_ref().map(|url| url.expose_secret());
        assert_eq!(smtp_url, Some("smtp://relay:25"));
        assert_eq!(mail.dir, PathBuf::from("/var/mail"));
        assert_eq!(mail.from, "Acme <no-reply@acme.test>");
        assert_eq!(mail.accept_url, "https://console.example/accept");
        assert_eq!(mail.smtp_pool_size, 3);
        assert_eq!(mail.smtp_timeout, Duration::from_secs(4));
        assert_eq!(mail.smtp_ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!notifier.enabled);
        assert_eq!(notifier.poll_interval, Duration::from_secs(7));
        assert_eq!(notifier.retry_initial, Duration::from_secs(3));
        assert_eq!(notifier.retry_max, Duration::from_secs(3600));
        assert_eq!(notifier.max_attempts, 4);
        let jwt_secret = auth
            .jwt_secret
            .as_ref()
            .map(|secret| secret.expose_secret());
        assert_eq!(jwt_secret, Some("an HS256 secret of at least 32 bytes"));
        assert_eq!(
            auth.jwt_public_key_file,
            Some(PathBuf::from("/etc/jwt.pem"))
        );
    }

    #[test]
    fn settings_are_accepted_after_a_subcommand_too() {
        let cli = Cli::try_parse_from(["usermgmt", "migrate", "--database-url", "sqlite::memory:"])
            .unwrap();
        assert_eq!(cli.settings.database.url.expose_secret(), "sqlite::memory:");
    }

    #[test]
    fn a_zero_or_garbled_ttl_is_refused() {
        assert!(Cli::try_parse_from(["usermgmt", "--invitation-ttl", "0s"]).is_err());
        assert!(Cli::try_parse_from(["usermgmt", "--invitation-ttl", "soon"]).is_err());
        let cli = Cli::try_parse_from(["usermgmt", "serve", "--invitation-ttl", "90m"]).unwrap();
        assert_eq!(cli.settings.invitations.ttl, Duration::from_secs(5400));
    }

    #[test]
    fn sizes_read_with_binary_suffixes_and_nonsense_is_refused() {
        assert_eq!(parse_size("4194304"), Ok(4 << 20));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        for nonsense in [
            "0",
            "0MiB",
            "4MB",
            "MiB",
            "-1",
            "",
            "99999999999999999999MiB",
        ] {
            assert!(parse_size(nonsense).is_err(), "{nonsense}");
        }
        assert!(Cli::try_parse_from(["usermgmt", "--max-concurrent-streams=0"]).is_err());
        assert!(Cli::try_parse_from(["usermgmt", "--request-timeout=0s"]).is_err());
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let cli = Cli::try_parse_from([
            "usermgmt",
            "--database-url=postgres://app:db-password@db:5432/users",
            "--smtp-url=smtp://mailer:smtp-password@relay:587?tls=required",
            "--jwt-secret=jwt-secret-of-at-least-32-bytes!!",
        ])
        .unwrap();
        for printed in [format!("{cli:?}"), format!("{:#?}", cli.settings)] {
            for secret in ["db-password", "smtp-password", "jwt-secret-of-at-least"] {
                assert!(!printed.contains(secret), "{secret} in {printed}");
            }
            assert!(printed.contains("listen_addr"), "the rest is printed");
        }
    }
}
