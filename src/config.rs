//! Command line and settings: every setting is a flag with an environment-variable fallback.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

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

#[derive(Clone, Args)]
pub struct Settings {
    /// gRPC listen address.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_LISTEN_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen_addr: SocketAddr,

    /// `sqlite://…` or `postgres://…`.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_DATABASE_URL",
        default_value = "sqlite://usermgmt.db?mode=rwc",
        hide_env_values = true
    )]
    pub database_url: String,

    /// How long an invitation link stays valid, e.g. `24h`, `90m`.
    #[arg(long, global = true, env = "USERMGMT_INVITATION_TTL", default_value = "24h", value_parser = parse_duration)]
    pub invitation_ttl: Duration,

    /// Log format: `text` or `json` (the level comes from RUST_LOG, default `info`).
    #[arg(
        long,
        global = true,
        env = "USERMGMT_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,

    /// SMTP server, e.g. `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://…`
    /// (TLS) or `smtp://host:25` (plain). Unset: emails are written as `.eml` files.
    #[arg(long, global = true, env = "USERMGMT_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Folder for `.eml` files when no SMTP URL is set.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_MAIL_DIR",
        default_value = "./mail"
    )]
    pub mail_dir: PathBuf,

    /// Sender of every email.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_MAIL_FROM",
        default_value = "usermgmt <no-reply@localhost>"
    )]
    pub mail_from: String,

    /// Base of the accept link; the secret is appended as `?token=`.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_ACCEPT_URL",
        default_value = "http://localhost:8080/accept-invite"
    )]
    pub accept_url: String,

    /// Run the notifier (outbox delivery) in this process.
    #[arg(long, global = true, env = "USERMGMT_NOTIFIER", default_value_t = true, action = clap::ArgAction::Set)]
    pub notifier: bool,

    /// How often the notifier looks for emails committed by other replicas.
    #[arg(long, global = true, env = "USERMGMT_NOTIFIER_POLL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub notifier_poll_interval: Duration,

    /// First retry delay of a failed send; it doubles per attempt (with jitter) up to the cap.
    #[arg(long, global = true, env = "USERMGMT_NOTIFIER_RETRY_INITIAL", default_value = "2s", value_parser = parse_duration)]
    pub notifier_retry_initial: Duration,

    /// Longest delay between two attempts of one email.
    #[arg(long, global = true, env = "USERMGMT_NOTIFIER_RETRY_MAX", default_value = "10m", value_parser = parse_duration)]
    pub notifier_retry_max: Duration,

    /// Attempts before an email is marked dead (and logged at error level).
    #[arg(long, global = true, env = "USERMGMT_NOTIFIER_MAX_ATTEMPTS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    pub notifier_max_attempts: u32,

    /// Pooled SMTP connections, and emails sent at once.
    #[arg(long, global = true, env = "USERMGMT_SMTP_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub smtp_pool_size: u32,

    /// Verifies `Bearer` JWTs signed with HS256 and this shared secret (at least 32 bytes).
    #[arg(
        long,
        global = true,
        env = "USERMGMT_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// Verifies `Bearer` JWTs signed with RS256 or EdDSA: the PEM public key's file.
    #[arg(long, global = true, env = "USERMGMT_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// Connect and command timeout of the SMTP client.
    #[arg(long, global = true, env = "USERMGMT_SMTP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub smtp_timeout: Duration,

    /// PEM file of root certificates to trust for the SMTP server's TLS, besides the public
    /// ones: for a relay whose certificate a private authority issued.
    #[arg(long, global = true, env = "USERMGMT_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(raw).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

impl Settings {
    /// Settings for tests and embedding: a database URL, everything else default.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        let mut settings = Cli::parse_from(["usermgmt"]).settings;
        settings.database_url = database_url.into();
        settings.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings
    }
}

// By hand: the database URL may carry a password.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen_addr", &self.listen_addr)
            .field("database_url", &redact_url(&self.database_url))
            .field("invitation_ttl", &self.invitation_ttl)
            .field("log_format", &self.log_format)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_dir", &self.mail_dir)
            .field("mail_from", &self.mail_from)
            .field("accept_url", &self.accept_url)
            .field("notifier", &self.notifier)
            .field("notifier_poll_interval", &self.notifier_poll_interval)
            .field("notifier_retry_initial", &self.notifier_retry_initial)
            .field("notifier_retry_max", &self.notifier_retry_max)
            .field("notifier_max_attempts", &self.notifier_max_attempts)
            .field("smtp_pool_size", &self.smtp_pool_size)
            .field("smtp_timeout", &self.smtp_timeout)
            .field("smtp_ca_file", &self.smtp_ca_file)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("jwt_public_key_file", &self.jwt_public_key_file)
            .finish()
    }
}

/// The URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/users"),
            "postgres://app:***@db:5432/users"
        );
        assert_eq!(
            redact_url("sqlite://usermgmt.db?mode=rwc"),
            "sqlite://usermgmt.db?mode=rwc"
        );
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let cli = Cli::try_parse_from(["usermgmt"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.settings.listen_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(cli.settings.invitation_ttl, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn a_zero_or_garbled_ttl_is_refused() {
        assert!(Cli::try_parse_from(["usermgmt", "--invitation-ttl", "0s"]).is_err());
        assert!(Cli::try_parse_from(["usermgmt", "--invitation-ttl", "soon"]).is_err());
        let cli = Cli::try_parse_from(["usermgmt", "serve", "--invitation-ttl", "90m"]).unwrap();
        assert_eq!(cli.settings.invitation_ttl, Duration::from_secs(5400));
    }
}
