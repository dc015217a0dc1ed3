//! Command line and settings: every setting is a flag with an environment-variable fallback.
//! Settings come in sections (server, database, invitations, mail, notifier, authentication,
//! API tokens, observability)
//! so that each part of the service receives only the section it needs. Secrets are held as
//! `SecretString`, so the derived `Debug` never prints them.

use std::{convert::Infallible, net::SocketAddr, path::PathBuf, time::Duration};

use chrono::TimeDelta;
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use crate::domain::{
    TokenLimits,
    invitation::{InviteQuota, Lifetimes},
};

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
        /// The token's role, at most the member's, as the API names it: ROLE_ADMINISTRATORS,
        /// ROLE_ENGINEERS, ROLE_PURGE_AND_PREFETCH_API_WEB, ROLE_PURGE_AND_PREFETCH_API,
        /// ROLE_USERS. Default: the member's.
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
    #[command(flatten)]
    pub tokens: TokenSettings,
    #[command(flatten)]
    pub observability: ObservabilitySettings,
    #[command(flatten)]
    pub health: HealthSettings,
    #[command(flatten)]
    pub watch: WatchSettings,
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
    #[arg(long, global = true, env = "USERMGMT_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration_between(millis(100), minutes(60)))]
    pub request_timeout: Duration,

    /// Calls the whole server works on at once; more are refused at once with
    /// RESOURCE_EXHAUSTED. Health checks and reflection are not counted. `0`: no limit.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_MAX_IN_FLIGHT",
        default_value_t = 64,
        value_parser = clap::builder::TypedValueParser::map(
            clap::value_parser!(u32).range(0..=100_000),
            |n| n as usize
        )
    )]
    pub max_in_flight: usize,

    /// Calls one caller (one credential; one peer address for calls without one) may have
    /// in progress at once; its further calls wait their turn, within their deadline, so a
    /// flooding client waits behind itself. `0`: no limit.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_MAX_CALLS_PER_CALLER",
        default_value_t = 4
    )]
    pub max_calls_per_caller: usize,

    /// Calls of one caller that may wait for its turn; more are refused at once with
    /// RESOURCE_EXHAUSTED.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_MAX_QUEUED_PER_CALLER",
        default_value_t = 1000
    )]
    pub max_queued_per_caller: usize,

    /// How late a call with a missing, malformed or unknown credential is answered
    /// UNAUTHENTICATED; meanwhile it keeps its place in its caller's share, so that a client
    /// repeating a bad credential is answered a few times a second. `0s`: at once.
    #[arg(long, global = true, env = "USERMGMT_UNAUTHENTICATED_DELAY", default_value = "100ms", value_parser = duration_between(Duration::ZERO, millis(5000)))]
    pub unauthenticated_delay: Duration,

    /// Calls one connection may have in progress at once; more are refused at once with
    /// RESOURCE_EXHAUSTED. `0`: no limit (the per-caller share and the stream limit bound
    /// a connection already).
    #[arg(
        long,
        global = true,
        env = "USERMGMT_MAX_CALLS_PER_CONNECTION",
        default_value_t = 0
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
    #[arg(long, global = true, env = "USERMGMT_HTTP2_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = duration_between(millis(1000), minutes(60)))]
    pub http2_keepalive_interval: Duration,

    /// How long to wait for the ping's answer before closing the connection.
    #[arg(long, global = true, env = "USERMGMT_HTTP2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = duration_between(millis(1000), minutes(10)))]
    pub http2_keepalive_timeout: Duration,

    /// Idle time before TCP keepalive probes start on a client's connection.
    #[arg(long, global = true, env = "USERMGMT_TCP_KEEPALIVE", default_value = "60s", value_parser = duration_between(millis(1000), minutes(120)))]
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

    /// Longest wait for a database connection (opening one, or a free one from the pool);
    /// past it a call fails with UNAVAILABLE. Keep it below the request timeout. From 100ms
    /// to 1 minute.
    #[arg(
        id = "database_timeout",
        long = "database-timeout",
        value_name = "DATABASE_TIMEOUT",
        global = true,
        env = "USERMGMT_DATABASE_TIMEOUT",
        default_value = "5s",
        value_parser = duration_between(millis(100), minutes(1))
    )]
    pub timeout: Duration,
}

/// What `grpc.health.v1` reports: the database is pinged on an interval; a ping that fails
/// or outlasts its timeout turns the service NOT_SERVING until one succeeds again. At
/// shutdown the service turns NOT_SERVING at once, then waits for calls in flight.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Health")]
pub struct HealthSettings {
    /// How often the database is pinged: from 100ms to 1 minute.
    #[arg(
        id = "health_check_interval",
        long = "health-check-interval",
        value_name = "HEALTH_CHECK_INTERVAL",
        global = true,
        env = "USERMGMT_HEALTH_CHECK_INTERVAL",
        default_value = "1s",
        value_parser = duration_between(millis(100), minutes(1))
    )]
    pub check_interval: Duration,

    /// How long one ping may take before the database counts as unreachable: from 100ms to
    /// 1 minute.
    #[arg(
        id = "health_check_timeout",
        long = "health-check-timeout",
        value_name = "HEALTH_CHECK_TIMEOUT",
        global = true,
        env = "USERMGMT_HEALTH_CHECK_TIMEOUT",
        default_value = "2s",
        value_parser = duration_between(millis(100), minutes(1))
    )]
    pub check_timeout: Duration,

    /// At shutdown, how long calls and streams in flight may go on before the server closes
    /// their connections anyway: from 0s to 1 hour.
    #[arg(
        long,
        global = true,
        env = "USERMGMT_SHUTDOWN_GRACE",
        default_value = "30s",
        value_parser = duration_between(Duration::ZERO, minutes(60))
    )]
    pub shutdown_grace: Duration,
}

/// WatchChanges streams.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Change streams")]
pub struct WatchSettings {
    /// How long a WatchChanges stream may stay quiet before it sends a heartbeat (a
    /// ChangeEvent with only its cursor), so that proxies keep it open; the watcher's role is
    /// checked again then. From 10ms to 10 minutes.
    #[arg(
        id = "watch_heartbeat_interval",
        long = "watch-heartbeat-interval",
        value_name = "WATCH_HEARTBEAT_INTERVAL",
        global = true,
        env = "USERMGMT_WATCH_HEARTBEAT_INTERVAL",
        default_value = "30s",
        value_parser = duration_between(millis(10), minutes(10))
    )]
    pub heartbeat_interval: Duration,
}

#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Invitations")]
pub struct InvitationSettings {
    /// How long an invitation link stays valid, e.g. `24h`, `90m`: from 1 minute to 30 days.
    #[arg(
        id = "invitation_ttl",
        long = "invitation-ttl",
        value_name = "INVITATION_TTL",
        global = true,
        env = "USERMGMT_INVITATION_TTL",
        default_value = "24h",
        value_parser = InvitationTtl::parse
    )]
    pub ttl: InvitationTtl,

    /// The shortest lifetime a caller may ask for in `invitation_ttl`: from 1 hour to
    /// 30 days.
    #[arg(
        id = "invitation_ttl_min",
        long = "invitation-ttl-min",
        value_name = "INVITATION_TTL_MIN",
        global = true,
        env = "USERMGMT_INVITATION_TTL_MIN",
        default_value = "1h",
        value_parser = RequestedTtl::parse
    )]
    pub ttl_min: RequestedTtl,

    /// The longest lifetime a caller may ask for in `invitation_ttl`: from 1 hour to
    /// 30 days, and not below the shortest.
    #[arg(
        id = "invitation_ttl_max",
        long = "invitation-ttl-max",
        value_name = "INVITATION_TTL_MAX",
        global = true,
        env = "USERMGMT_INVITATION_TTL_MAX",
        default_value = "30days",
        value_parser = RequestedTtl::parse
    )]
    pub ttl_max: RequestedTtl,

    /// How many invitations and resends each account may make in a sliding window, shared
    /// by every replica: `<count>/<window>`, e.g. `500/24h`; `0` turns the quota off.
    #[arg(
        id = "invite_quota",
        long = "invite-quota",
        value_name = "INVITE_QUOTA",
        global = true,
        env = "USERMGMT_INVITE_QUOTA",
        default_value = "500/24h",
        value_parser = QuotaSetting::parse
    )]
    pub quota: QuotaSetting,
}

/// The invitation quota, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaSetting(pub Option<InviteQuota>);

impl QuotaSetting {
    pub fn parse(raw: &str) -> Result<Self, String> {
        InviteQuota::parse(raw).map(Self)
    }
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

    /// Pooled SMTP connections, and emails sent at once: 1 to 100.
    // The pool reserves room for all of them up front.
    #[arg(long, global = true, env = "USERMGMT_SMTP_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub smtp_pool_size: u32,

    /// Connect and command timeout of the SMTP client: from 100ms to 10 minutes.
    #[arg(long, global = true, env = "USERMGMT_SMTP_TIMEOUT", default_value = "10s", value_parser = duration_between(millis(100), minutes(10)))]
    pub smtp_timeout: Duration,

    /// PEM file of root certificates to trust for the SMTP server's TLS, besides the public
    /// ones: for a relay whose certificate a private authority issued.
    #[arg(long, global = true, env = "USERMGMT_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,
}

/// The outbox delivery loop: whether it runs here, how it polls, retries and leases. A
/// failed email is retried for as long as its invitation's link works: there is no
/// attempt limit.
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

    /// How often the notifier looks for emails committed by other replicas: from 10ms to 1 hour.
    #[arg(
        id = "notifier_poll_interval",
        long = "notifier-poll-interval",
        value_name = "NOTIFIER_POLL_INTERVAL",
        global = true,
        env = "USERMGMT_NOTIFIER_POLL_INTERVAL",
        default_value = "5s",
        value_parser = duration_between(millis(10), minutes(60))
    )]
    pub poll_interval: Duration,

    /// First retry delay of a failed send; it doubles per attempt (with jitter) up to the cap.
    /// From 100ms to 1 hour.
    #[arg(
        id = "notifier_retry_initial",
        long = "notifier-retry-initial",
        value_name = "NOTIFIER_RETRY_INITIAL",
        global = true,
        env = "USERMGMT_NOTIFIER_RETRY_INITIAL",
        default_value = "2s",
        value_parser = duration_between(millis(100), minutes(60))
    )]
    pub retry_initial: Duration,

    /// Longest delay between two attempts of one email: from 100ms to 1 day.
    #[arg(
        id = "notifier_retry_max",
        long = "notifier-retry-max",
        value_name = "NOTIFIER_RETRY_MAX",
        global = true,
        env = "USERMGMT_NOTIFIER_RETRY_MAX",
        default_value = "10m",
        value_parser = duration_between(millis(100), minutes(24 * 60))
    )]
    pub retry_max: Duration,

    /// How long a claimed email is reserved for the replica sending it: renewed while it
    /// sends, so a replica that dies hands its emails to another within one lease (plus the
    /// poll interval). From 1s to 10 minutes.
    #[arg(
        id = "notifier_lease",
        long = "notifier-lease",
        value_name = "NOTIFIER_LEASE",
        global = true,
        env = "USERMGMT_NOTIFIER_LEASE",
        default_value = "15s",
        value_parser = duration_between(millis(1000), minutes(10))
    )]
    pub lease: Duration,
}

/// How `Bearer` JWTs are verified; with no secret, key file or JWKS URL, JWTs are refused.
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

    /// Verifies `Bearer` JWTs signed with RS256, ES256 or EdDSA: the PEM public key's file.
    #[arg(long, global = true, env = "USERMGMT_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// Verifies `Bearer` JWTs with the keys of an identity provider's JWKS endpoint (http or
    /// https), chosen by the token's `kid`: RS256, ES256 and EdDSA.
    #[arg(long, global = true, env = "USERMGMT_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<url::Url>,

    /// When set, JWTs must carry this `iss`.
    #[arg(long, global = true, env = "USERMGMT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, JWTs must carry this `aud` (or an array containing it).
    #[arg(long, global = true, env = "USERMGMT_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

/// API tokens (R15): the account's cap is 100 live tokens.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "API tokens")]
pub struct TokenSettings {
    /// Live tokens one member may hold, so that no single member exhausts the account's 100.
    #[arg(
        id = "max_tokens_per_member",
        long = "max-tokens-per-member",
        value_name = "MAX_TOKENS_PER_MEMBER",
        global = true,
        env = "USERMGMT_MAX_TOKENS_PER_MEMBER",
        default_value_t = 50,
        value_parser = clap::value_parser!(u64).range(1..=100)
    )]
    pub max_per_member: u64,
}

impl TokenSettings {
    pub fn limits(&self) -> TokenLimits {
        TokenLimits {
            per_member: self.max_per_member,
            ..TokenLimits::default()
        }
    }
}

/// Prometheus metrics and OpenTelemetry traces; both off unless configured. Traces read the
/// standard OpenTelemetry variables.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Observability")]
pub struct ObservabilitySettings {
    /// Serves Prometheus metrics at `http://<addr>/metrics`, e.g. `0.0.0.0:9090`. Unset: no
    /// metrics listener.
    #[arg(long, global = true, env = "USERMGMT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// OTLP collector that receives the traces, e.g. `http://collector:4317` (gRPC) or
    /// `http://collector:4318` (HTTP; `/v1/traces` is appended). Unset: no traces.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<url::Url>,

    /// How traces reach the collector: `grpc` or `http/protobuf`.
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_enum,
        default_value_t
    )]
    pub otlp_protocol: OtlpProtocol,

    /// The `service.name` the traces carry.
    #[arg(
        long,
        global = true,
        env = "OTEL_SERVICE_NAME",
        default_value = "usermgmt"
    )]
    pub otel_service_name: String,
}

/// The OTLP transports the service speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP over gRPC, usually port 4317.
    #[value(name = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies, usually port 4318 (the standard's default).
    #[default]
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

/// How long an invitation link stays valid: from one minute to 30 days, so that an expiry
/// computed from any present time is a date, and no typo leaves links alive for ages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvitationTtl(TimeDelta);

impl InvitationTtl {
    pub const MIN: Duration = minutes(1);
    pub const MAX: Duration = minutes(30 * 24 * 60);

    /// A lifetime such as `24h` or `90m`, within the bounds.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let duration = duration_between(Self::MIN, Self::MAX)(raw)?;
        TimeDelta::from_std(duration)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    pub fn as_delta(self) -> TimeDelta {
        self.0
    }
}

impl InvitationSettings {
    /// The default lifetime of a link and the range callers may ask for.
    pub fn lifetimes(&self) -> Result<Lifetimes, String> {
        Lifetimes::new(
            self.ttl.as_delta(),
            self.ttl_min.as_delta(),
            self.ttl_max.as_delta(),
        )
        .map_err(|e| format!("USERMGMT_INVITATION_TTL_MIN/_MAX: {e}"))
    }
}

/// A bound on the lifetimes callers may ask for: from 1 hour to 30 days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestedTtl(TimeDelta);

impl RequestedTtl {
    pub const MIN: Duration = minutes(60);
    pub const MAX: Duration = InvitationTtl::MAX;

    /// A bound such as `1h` or `7days`, within 1 hour and 30 days.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let duration = duration_between(Self::MIN, Self::MAX)(raw)?;
        TimeDelta::from_std(duration)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    pub fn as_delta(self) -> TimeDelta {
        self.0
    }
}

/// Parses a duration such as `90s`, `24h` or `30days`, refusing one outside `min..=max`:
/// a zero delay would spin, and a huge one overflows the dates computed from it.
fn duration_between(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |raw| {
        let duration = humantime::parse_duration(raw).map_err(|e| e.to_string())?;
        if duration < min || duration > max {
            return Err(format!(
                "must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(duration)
    }
}

const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
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
mod tests;
