//! The settings' names, defaults, bounds and secrecy.
use clap::CommandFactory;
use secrecy::ExposeSecret;

use super::*;

/// Every setting's environment variable (the names other programs rely on), its flag and
/// the `--help` section it is listed under.
const SETTINGS: [(&str, &str, &str); 45] = [
    ("USERMGMT_LISTEN_ADDR", "listen-addr", "Server"),
    ("USERMGMT_LOG_FORMAT", "log-format", "Server"),
    ("USERMGMT_REQUEST_TIMEOUT", "request-timeout", "Server"),
    (
        "USERMGMT_UNAUTHENTICATED_DELAY",
        "unauthenticated-delay",
        "Server",
    ),
    ("USERMGMT_MAX_IN_FLIGHT", "max-in-flight", "Server"),
    (
        "USERMGMT_MAX_CALLS_PER_CONNECTION",
        "max-calls-per-connection",
        "Server",
    ),
    (
        "USERMGMT_MAX_CALLS_PER_CALLER",
        "max-calls-per-caller",
        "Server",
    ),
    (
        "USERMGMT_MAX_QUEUED_PER_CALLER",
        "max-queued-per-caller",
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
    (
        "USERMGMT_INVITATION_TTL_MIN",
        "invitation-ttl-min",
        "Invitations",
    ),
    (
        "USERMGMT_INVITATION_TTL_MAX",
        "invitation-ttl-max",
        "Invitations",
    ),
    ("USERMGMT_INVITE_QUOTA", "invite-quota", "Invitations"),
    ("USERMGMT_SMTP_URL", "smtp-url", "Mail"),
    ("USERMGMT_MAIL_DIR", "mail-dir", "Mail"),
    ("USERMGMT_MAIL_FROM", "mail-from", "Mail"),
    ("USERMGMT_ACCEPT_URL", "accept-url", "Mail"),
    ("USERMGMT_SMTP_POOL_SIZE", "smtp-pool-size", "Mail"),
    ("USERMGMT_SMTP_TIMEOUT", "smtp-timeout", "Mail"),
    ("USERMGMT_SMTP_CA_FILE", "smtp-ca-file", "Mail"),
    ("USERMGMT_NOTIFIER", "notifier", "Notifier"),
    (
        "USERMGMT_WATCH_HEARTBEAT_INTERVAL",
        "watch-heartbeat-interval",
        "Change streams",
    ),
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
    ("USERMGMT_NOTIFIER_LEASE", "notifier-lease", "Notifier"),
    ("USERMGMT_JWT_SECRET", "jwt-secret", "Authentication"),
    (
        "USERMGMT_JWT_PUBLIC_KEY_FILE",
        "jwt-public-key-file",
        "Authentication",
    ),
    (
        "USERMGMT_MAX_TOKENS_PER_MEMBER",
        "max-tokens-per-member",
        "API tokens",
    ),
    ("USERMGMT_JWT_JWKS_URL", "jwt-jwks-url", "Authentication"),
    ("USERMGMT_JWT_ISSUER", "jwt-issuer", "Authentication"),
    ("USERMGMT_JWT_AUDIENCE", "jwt-audience", "Authentication"),
    ("USERMGMT_METRICS_ADDR", "metrics-addr", "Observability"),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "otlp-endpoint",
        "Observability",
    ),
    (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "otlp-protocol",
        "Observability",
    ),
    ("OTEL_SERVICE_NAME", "otel-service-name", "Observability"),
    ("USERMGMT_DATABASE_TIMEOUT", "database-timeout", "Database"),
    (
        "USERMGMT_HEALTH_CHECK_INTERVAL",
        "health-check-interval",
        "Health",
    ),
    (
        "USERMGMT_HEALTH_CHECK_TIMEOUT",
        "health-check-timeout",
        "Health",
    ),
    ("USERMGMT_SHUTDOWN_GRACE", "shutdown-grace", "Health"),
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
        tokens,
        observability,
        health,
        watch,
    } = cli.settings;
    assert_eq!(watch.heartbeat_interval, Duration::from_secs(30));
    assert!(observability.metrics_addr.is_none());
    assert!(observability.otlp_endpoint.is_none());
    assert_eq!(observability.otlp_protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(observability.otel_service_name, "usermgmt");
    assert_eq!(tokens.max_per_member, 50);
    assert_eq!(database.timeout, Duration::from_secs(5));
    assert_eq!(health.check_interval, Duration::from_secs(1));
    assert_eq!(health.check_timeout, Duration::from_secs(2));
    assert_eq!(health.shutdown_grace, Duration::from_secs(30));
    assert_eq!(server.listen_addr.to_string(), "127.0.0.1:50051");
    assert_eq!(server.log_format, LogFormat::Text);
    assert_eq!(server.request_timeout, Duration::from_secs(30));
    assert_eq!(server.max_in_flight, 64);
    assert_eq!(server.max_calls_per_connection, 0);
    assert_eq!(server.max_calls_per_caller, 4);
    assert_eq!(server.unauthenticated_delay, Duration::from_millis(100));
    assert_eq!(server.max_queued_per_caller, 1000);
    assert_eq!(server.max_concurrent_streams, 100);
    assert_eq!(server.max_message_size, 4 << 20);
    assert_eq!(server.http2_keepalive_interval, Duration::from_secs(60));
    assert_eq!(server.http2_keepalive_timeout, Duration::from_secs(20));
    assert_eq!(server.tcp_keepalive, Duration::from_secs(60));
    assert_eq!(
        database.url.expose_secret(),
        "sqlite://usermgmt.db?mode=rwc"
    );
    assert_eq!(invitations.ttl.as_delta(), TimeDelta::hours(24));
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
    assert_eq!(notifier.lease, Duration::from_secs(15));
    assert!(auth.jwt_secret.is_none());
    assert!(auth.jwt_public_key_file.is_none());
    assert!(auth.jwt_jwks_url.is_none());
    assert!(auth.jwt_issuer.is_none());
    assert!(auth.jwt_audience.is_none());
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
        "--max-calls-per-caller=3",
        "--unauthenticated-delay=0s",
        "--max-queued-per-caller=9",
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
        "--notifier-lease=30s",
        "--jwt-secret=an HS256 secret of at least 32 bytes",
        "--jwt-public-key-file=/etc/jwt.pem",
        "--max-tokens-per-member=10",
        "--jwt-jwks-url=https://idp.example/.well-known/jwks.json",
        "--jwt-issuer=https://idp.example/",
        "--jwt-audience=usermgmt",
        "--metrics-addr=0.0.0.0:9090",
        "--otlp-endpoint=http://collector:4317",
        "--otlp-protocol=grpc",
        "--otel-service-name=usermgmt-eu",
        "--database-timeout=2s",
        "--health-check-interval=500ms",
        "--health-check-timeout=300ms",
        "--shutdown-grace=0s",
        "--watch-heartbeat-interval=250ms",
    ])
    .unwrap();
    let Settings {
        server,
        database,
        invitations,
        mail,
        notifier,
        auth,
        tokens,
        observability,
        health,
        watch,
    } = cli.settings;
    assert_eq!(watch.heartbeat_interval, Duration::from_millis(250));
    assert_eq!(
        observability.metrics_addr.map(|addr| addr.to_string()),
        Some("0.0.0.0:9090".to_string())
    );
    assert_eq!(
        observability.otlp_endpoint.as_ref().map(url::Url::as_str),
        Some("http://collector:4317/")
    );
    assert_eq!(observability.otlp_protocol, OtlpProtocol::Grpc);
    assert_eq!(observability.otel_service_name, "usermgmt-eu");

    assert_eq!(database.timeout, Duration::from_secs(2));
    assert_eq!(health.check_interval, Duration::from_millis(500));
    assert_eq!(health.check_timeout, Duration::from_millis(300));
    assert_eq!(health.shutdown_grace, Duration::ZERO);
    assert_eq!(tokens.limits().per_member, 10);
    assert_eq!(tokens.limits().per_account, 100);
    assert_eq!(server.listen_addr.to_string(), "0.0.0.0:6000");
    assert_eq!(server.log_format, LogFormat::Json);
    assert_eq!(server.request_timeout, Duration::from_secs(5));
    assert_eq!(server.max_in_flight, 0);
    assert_eq!(server.max_calls_per_connection, 2);
    assert_eq!(server.max_calls_per_caller, 3);
    assert_eq!(server.unauthenticated_delay, Duration::ZERO);
    assert_eq!(server.max_queued_per_caller, 9);
    assert_eq!(server.max_concurrent_streams, 50);
    assert_eq!(server.max_message_size, 512 << 10);
    assert_eq!(server.http2_keepalive_interval, Duration::from_secs(30));
    assert_eq!(server.http2_keepalive_timeout, Duration::from_secs(5));
    assert_eq!(server.tcp_keepalive, Duration::from_secs(120));
    assert_eq!(database.url.expose_secret(), "postgres://db/users");
    assert_eq!(invitations.ttl.as_delta(), TimeDelta::minutes(90));
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
    assert_eq!(notifier.lease, Duration::from_secs(30));
    let jwt_secret = auth
        .jwt_secret
        .as_ref()
        .map(|secret| secret.expose_secret());
    assert_eq!(jwt_secret, Some("an HS256 secret of at least 32 bytes"));
    assert_eq!(
        auth.jwt_public_key_file,
        Some(PathBuf::from("/etc/jwt.pem"))
    );
    assert_eq!(
        auth.jwt_jwks_url.as_ref().map(url::Url::as_str),
        Some("https://idp.example/.well-known/jwks.json")
    );
    assert_eq!(auth.jwt_issuer.as_deref(), Some("https://idp.example/"));
    assert_eq!(auth.jwt_audience.as_deref(), Some("usermgmt"));
    assert!(
        Cli::try_parse_from(["usermgmt", "--jwt-jwks-url=not a url"]).is_err(),
        "a JWKS URL that does not parse is refused"
    );
}

#[test]
fn settings_are_accepted_after_a_subcommand_too() {
    let cli =
        Cli::try_parse_from(["usermgmt", "migrate", "--database-url", "sqlite::memory:"]).unwrap();
    assert_eq!(cli.settings.database.url.expose_secret(), "sqlite::memory:");
}

#[test]
fn a_zero_or_garbled_ttl_is_refused() {
    assert!(Cli::try_parse_from(["usermgmt", "--invitation-ttl", "0s"]).is_err());
    assert!(Cli::try_parse_from(["usermgmt", "--invitation-ttl", "soon"]).is_err());
    let cli = Cli::try_parse_from(["usermgmt", "serve", "--invitation-ttl", "90m"]).unwrap();
    assert_eq!(
        cli.settings.invitations.ttl.as_delta(),
        TimeDelta::minutes(90)
    );
}

/// Every duration setting's flag, with the shortest and the longest value it takes.
const DURATION_BOUNDS: [(&str, &str, &str); 9] = [
    ("--database-timeout", "100ms", "1m"),
    ("--health-check-interval", "100ms", "1m"),
    ("--health-check-timeout", "100ms", "1m"),
    ("--invitation-ttl", "1m", "30days"),
    ("--smtp-timeout", "100ms", "10m"),
    ("--notifier-poll-interval", "10ms", "1h"),
    ("--notifier-retry-initial", "100ms", "1h"),
    ("--notifier-retry-max", "100ms", "1day"),
    ("--notifier-lease", "1s", "10m"),
];

fn parse_one(flag: &str, value: &str) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(["usermgmt", &format!("{flag}={value}")])
}

#[test]
fn every_duration_setting_takes_its_bounds_and_refuses_beyond_them() {
    let shift = |raw: &str, by: fn(Duration, Duration) -> Duration| {
        let bound = humantime::parse_duration(raw).unwrap();
        humantime::format_duration(by(bound, Duration::from_millis(1))).to_string()
    };
    for (flag, min, max) in DURATION_BOUNDS {
        for inside in [min, max] {
            assert!(parse_one(flag, inside).is_ok(), "{flag}={inside}");
        }
        let below = shift(min, |bound, step| bound - step);
        let above = shift(max, |bound, step| bound + step);
        for outside in ["0s", below.as_str(), above.as_str(), "1000000000d"] {
            let error = parse_one(flag, outside).expect_err(outside).to_string();
            assert!(error.contains(flag), "{error}");
            assert!(
                error.contains(&format!("must be between {min} and {max}")),
                "{error}"
            );
        }
    }
}

#[test]
fn an_absurd_invitation_ttl_is_refused_rather_than_replaced() {
    let error = parse_one("--invitation-ttl", "1000000000d")
        .expect_err("a lifetime of millions of years")
        .to_string();
    assert!(
        error.contains("'--invitation-ttl <INVITATION_TTL>': must be between 1m and 30days"),
        "{error}"
    );
    let longest = parse_one("--invitation-ttl", "30days").unwrap();
    assert_eq!(
        longest.settings.invitations.ttl.as_delta(),
        TimeDelta::days(30)
    );
}

#[test]
fn the_smtp_pool_holds_1_to_100_connections() {
    for size in ["1", "100"] {
        assert!(parse_one("--smtp-pool-size", size).is_ok(), "{size}");
    }
    for size in ["0", "101", "4000000000"] {
        let error = parse_one("--smtp-pool-size", size).expect_err(size);
        assert!(error.to_string().contains("--smtp-pool-size"), "{error}");
    }
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

#[test]
fn otlp_protocols_read_as_the_standard_spells_them() {
    let protocol = |value: &str| {
        parse_one("--otlp-protocol", value).map(|cli| cli.settings.observability.otlp_protocol)
    };
    assert_eq!(protocol("grpc").unwrap(), OtlpProtocol::Grpc);
    assert_eq!(
        protocol("http/protobuf").unwrap(),
        OtlpProtocol::HttpProtobuf
    );
    let refused = protocol("http/json").unwrap_err().to_string();
    assert!(refused.contains("http/json"), "{refused}");
    assert!(parse_one("--otlp-endpoint", "not a url").is_err());
    assert!(parse_one("--metrics-addr", "localhost").is_err());
}

#[test]
fn the_unauthenticated_delay_may_be_zero_and_at_most_five_seconds() {
    for delay in ["0s", "5s"] {
        assert!(
            parse_one("--unauthenticated-delay", delay).is_ok(),
            "{delay}"
        );
    }
    for delay in ["5001ms", "later"] {
        let error = parse_one("--unauthenticated-delay", delay).expect_err(delay);
        assert!(
            error.to_string().contains("--unauthenticated-delay"),
            "{error}"
        );
    }
}

#[test]
fn the_shutdown_grace_may_be_zero_and_at_most_an_hour() {
    for grace in ["0s", "1h"] {
        assert!(parse_one("--shutdown-grace", grace).is_ok(), "{grace}");
    }
    for grace in ["61m", "soon"] {
        let error = parse_one("--shutdown-grace", grace).expect_err(grace);
        assert!(error.to_string().contains("--shutdown-grace"), "{error}");
    }
}
