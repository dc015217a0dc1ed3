//! One account of 1,000,000 members: each figure of the service beside its floor, what the
//! database alone does, measured in the same run.
//!
//! Seeds the account by SQL (COPY on PostgreSQL, multi-row INSERTs on SQLite, one
//! transaction, through the tables so that their triggers fire), starts the release binary
//! as a child process, and measures ListUsers (sequential calls through the generated
//! client), GetUser (h2load) and InviteUser (32 tasks) throughput, and the server's RSS
//! with 1,000 calls in flight. The floors: the page query the store sends, alone (pgbench
//! on PostgreSQL, sqlx on SQLite), and pgbench of `benches/pgbench/get_user.sql` and
//! `benches/pgbench/invite_user.sql`.
//!
//! ```text
//! cargo build --release --bin usermgmt --example scale_bench
//! target/release/examples/scale_bench --database-url postgres://postgres@127.0.0.1:5432/usermgmt_bench_scale
//! target/release/examples/scale_bench --database-url 'sqlite:///tmp/usermgmt_bench_scale.db?mode=rwc'
//! ```
//!
//! A PostgreSQL database that does not exist is created; an account seeded by an earlier
//! run with the same `--members` is reused. The table goes to stdout, progress to stderr.

#[path = "support/mod.rs"]
mod support;

#[path = "scale_bench/list.rs"]
mod list;
#[path = "scale_bench/load.rs"]
mod load;
#[path = "scale_bench/pgbench.rs"]
mod pgbench;
#[path = "scale_bench/seed.rs"]
mod seed;
#[path = "scale_bench/server.rs"]
mod server;
#[path = "scale_bench/stats.rs"]
mod stats;

use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use clap::Parser;
use sea_orm::Database;

use usermgmt::grpc::pb::{self, user_management_client::UserManagementClient};

use stats::Figure;

#[derive(Debug, Parser)]
#[command(about = "ListUsers, GetUser, InviteUser and RSS on one account of many members")]
struct Args {
    /// `postgres://…/<database>` (created when missing) or `sqlite://<file>?mode=rwc`.
    #[arg(long)]
    database_url: String,
    /// Members of the account, besides its administrator.
    #[arg(long, default_value_t = 1_000_000)]
    members: u32,
    /// Timed sequential calls per ListUsers scenario (and runs of its floor).
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Untimed calls before each ListUsers scenario.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Seconds after which a slow ListUsers scenario (and its SQLite floor) stops at fewer
    /// calls than --iterations (at least 10).
    #[arg(long, default_value_t = 30)]
    budget: u64,
    /// Timed calls a ListUsers scenario makes however slow it is.
    #[arg(long, default_value_t = 10)]
    min_calls: usize,
    /// Seconds of each throughput run (h2load, InviteUser, pgbench).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The service binary.
    #[arg(long, default_value = "target/release/usermgmt")]
    server: PathBuf,
    /// pgbench script of the GetUser lookup (variables: account_id, user_id, token_hash).
    #[arg(long, default_value = "benches/pgbench/get_user.sql")]
    get_user_sql: PathBuf,
    /// pgbench script of the InviteUser transaction (variables: account_id, admin_id,
    /// token_id, token_hash).
    #[arg(long, default_value = "benches/pgbench/invite_user.sql")]
    invite_user_sql: PathBuf,
    /// Concurrent InviteUser calls, and pgbench clients of both scripts.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// API tokens of the administrator the concurrent calls spread over (each token is a
    /// caller with its own share of the server).
    #[arg(long, default_value_t = 8)]
    tokens: usize,
    /// Seconds the 1,000 streams are held open while RSS is read.
    #[arg(long, default_value_t = 5)]
    rss_seconds: u64,
    /// Time ListUsers only: no GetUser, InviteUser or memory runs.
    #[arg(long)]
    list_only: bool,
    /// Seed the account (or find it seeded) and stop.
    #[arg(long)]
    seed_only: bool,
    /// Time GetUser only, beside its floor: no ListUsers, InviteUser or memory runs.
    #[arg(long, conflicts_with = "list_only")]
    get_user_only: bool,
    /// Time InviteUser only, beside its floor (with `--get-user-only`, both).
    #[arg(long, conflicts_with = "list_only")]
    invite_user_only: bool,
    /// Folder for pgbench scripts and logs.
    #[arg(long, default_value = "/tmp/bench-scale")]
    work: PathBuf,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(args.members >= 2, "--members must be at least 2");
    assert!(args.iterations > 0 && args.tokens > 0 && args.clients > 0);
    std::fs::create_dir_all(&args.work).expect("create the work folder");
    let postgres = args.database_url.starts_with("postgres");
    if postgres {
        support::ensure_postgres_database(&args.database_url).await;
    }
    server::migrate(&args.server, &args.database_url).await;
    let db = Database::connect(args.database_url.as_str())
        .await
        .expect("connect to the database");
    let now = now_micros();
    let seeded = seed::prepare(&db, args.members, now).await;
    if seeded.seconds.is_none() {
        seed::analyze(&db).await;
    }
    if args.seed_only {
        match seeded.seconds {
            Some(seconds) => eprintln!("seeded in {seconds:.1} s"),
            None => eprintln!("seeded by an earlier run"),
        }
        return;
    }
    let issued = seed::issue_tokens(&db, &seeded, args.tokens, now).await;
    let tokens: Vec<String> = issued.iter().map(|token| token.secret.clone()).collect();

    let server = server::start(&args.server, &args.database_url).await;
    let (idle_rss, _) = server.memory();
    eprintln!("server pid {} on {}", server.pid, server.addr);
    let client = list::Client {
        users: UserManagementClient::new(
            tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
                .expect("a valid URI")
                .connect()
                .await
                .expect("connect to the server"),
        ),
        token: tokens[0].clone(),
        account_id: seeded.account_id,
    };
    let mut rows: Vec<(String, Figure, Figure)> = Vec::new();
    if args.get_user_only || args.invite_user_only {
        if args.get_user_only {
            let get_user = get_user_request(&db, &seeded, args.members).await;
            rows.push(get_user_figure(&args, &server, &issued, get_user).await);
        }
        if args.invite_user_only {
            rows.push(invite_user_figure(&args, &server, &seeded, &issued).await);
        }
        server.stop().await;
        report(&args, &db, &seeded, idle_rss, &rows).await;
        return;
    }

    // ListUsers.
    let position = (args.members / 2).min(500_000);
    let token = list::deep_page_token(&client, position).await;
    let (after, _) = seed::member_ids(&db, seeded.account_id, position - 1).await;
    let scenarios = list::scenarios(&client, (position, token, after));
    let budget = Duration::from_secs(args.budget);
    for (index, scenario) in scenarios.iter().enumerate() {
        eprintln!("timing {}", scenario.name);
        let calls = (args.warmup, args.iterations, args.min_calls);
        let (figure, returned, failed) = list::time_calls(&client, scenario, calls, budget).await;
        let floor = list::floor(
            &db,
            &args.database_url,
            &args.work,
            seeded.account_id,
            (index, scenario),
            (args.iterations, budget),
            now_micros(),
        )
        .await;
        rows.push((
            format!(
                "{} ({returned} returned, {} calls{failed})",
                scenario.name, figure.count
            ),
            Figure::Latency(figure),
            floor,
        ));
        let (name, figure, floor) = &rows[rows.len() - 1];
        eprintln!("| {name} | {} | {} |", figure.text(), floor.text());
    }

    if !args.list_only {
        other_figures(&args, &db, &server, &seeded, &issued, &mut rows).await;
    }
    server.stop().await;
    report(&args, &db, &seeded, idle_rss, &rows).await;
}

/// GetUser, InviteUser and memory, each beside its floor.
async fn other_figures(
    args: &Args,
    db: &sea_orm::DatabaseConnection,
    server: &server::Server,
    seeded: &seed::Seeded,
    issued: &[seed::Issued],
    rows: &mut Vec<(String, Figure, Figure)>,
) {
    let tokens: Vec<String> = issued.iter().map(|token| token.secret.clone()).collect();
    let get_user = get_user_request(db, seeded, args.members).await;
    rows.push(get_user_figure(args, server, issued, get_user.clone()).await);
    rows.push(invite_user_figure(args, server, seeded, issued).await);

    // RSS with 1,000 calls in flight.
    eprintln!(
        "RSS: 10 connections × 100 GetUser calls for {} s",
        args.rss_seconds
    );
    let (figure, outcomes) = load::rss_under_streams(
        server,
        &tokens,
        get_user,
        (10, 100),
        Duration::from_secs(args.rss_seconds),
    )
    .await;
    eprintln!("GetUser outcomes under 1,000 streams: {outcomes:?}");
    rows.push((
        "Server RSS, 1,000 GetUser calls in flight (10 connections × 100)".into(),
        figure,
        Figure::None(""),
    ));
}

/// GetUser of one member (a third into the account) by its first token.
async fn get_user_request(
    db: &sea_orm::DatabaseConnection,
    seeded: &seed::Seeded,
    members: u32,
) -> pb::GetUserRequest {
    let target = (members / 3) | 1;
    let (_, target_user) = seed::member_ids(db, seeded.account_id, target).await;
    pb::GetUserRequest {
        account_id: seeded.account_id.to_string(),
        user_id: target_user.to_string(),
    }
}

/// GetUser by h2load, beside pgbench of the statement it sends (PostgreSQL).
async fn get_user_figure(
    args: &Args,
    server: &server::Server,
    issued: &[seed::Issued],
    get_user: pb::GetUserRequest,
) -> (String, Figure, Figure) {
    eprintln!("GetUser: h2load 4 × 8 for {} s", args.seconds);
    let cpu_before = server.cpu_seconds();
    let (figure, requests) = load::get_user_h2load(
        server.addr,
        &issued[0].secret,
        get_user.clone(),
        (4, 8),
        args.seconds,
    )
    .await;
    let cpu = server.cpu_seconds() - cpu_before;
    eprintln!("h2load {requests}");
    let succeeded = requests
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" succeeded")?.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    eprintln!(
        "server CPU: {cpu:.2} s for {succeeded} calls: {}",
        Figure::CpuPerCall(cpu * 1e6 / succeeded).text()
    );
    let floor = if args.database_url.starts_with("postgres") {
        eprintln!("GetUser floor: pgbench {}", args.get_user_sql.display());
        Figure::Rate(pgbench::throughput(
            &args.database_url,
            &args.get_user_sql,
            args.clients,
            2,
            args.seconds,
            &[
                ("account_id", get_user.account_id),
                ("user_id", get_user.user_id),
                ("token_hash", issued[0].hash.clone()),
            ],
        ))
    } else {
        Figure::None("no pgbench on SQLite")
    };
    (
        "GetUser, h2load 4 connections × 8 streams".into(),
        figure,
        floor,
    )
}

/// InviteUser from `--clients` tasks over the tokens, beside pgbench of its transaction.
async fn invite_user_figure(
    args: &Args,
    server: &server::Server,
    seeded: &seed::Seeded,
    issued: &[seed::Issued],
) -> (String, Figure, Figure) {
    let tokens: Vec<String> = issued.iter().map(|token| token.secret.clone()).collect();
    eprintln!("InviteUser: {} tasks for {} s", args.clients, args.seconds);
    let cpu_before = server.cpu_seconds();
    let (figure, outcomes) = load::invite_users(
        server.addr,
        seeded.account_id,
        &tokens,
        args.clients,
        Duration::from_secs(args.seconds),
    )
    .await;
    let cpu = server.cpu_seconds() - cpu_before;
    eprintln!("InviteUser outcomes: {outcomes:?}");
    let succeeded = outcomes.get("OK").copied().unwrap_or_default() as f64;
    eprintln!(
        "server CPU: {cpu:.2} s for {succeeded} calls: {}",
        Figure::CpuPerCall(cpu * 1e6 / succeeded).text()
    );
    let floor = if args.database_url.starts_with("postgres") {
        eprintln!(
            "InviteUser floor: pgbench {}",
            args.invite_user_sql.display()
        );
        Figure::Rate(pgbench::throughput(
            &args.database_url,
            &args.invite_user_sql,
            args.clients,
            2,
            args.seconds,
            &[
                ("account_id", seeded.account_id.to_string()),
                ("admin_id", seeded.admin_id.to_string()),
                ("token_id", issued[0].id.to_string()),
                ("token_hash", issued[0].hash.clone()),
            ],
        ))
    } else {
        Figure::None("no pgbench on SQLite")
    };
    (
        format!(
            "InviteUser, {} concurrent distinct invitations",
            args.clients
        ),
        figure,
        floor,
    )
}

/// The table, with what it was measured on.
async fn report(
    args: &Args,
    db: &sea_orm::DatabaseConnection,
    seeded: &seed::Seeded,
    idle_rss: f64,
    rows: &[(String, Figure, Figure)],
) {
    println!("## One account of {} members\n", args.members);
    println!("- database: {}", seed::version(db).await);
    match seeded.seconds {
        Some(seconds) => println!("- seeded in {seconds:.1} s (COPY or INSERTs, then ANALYZE)"),
        None => println!("- seeded by an earlier run"),
    }
    println!(
        "- server: {}, idle RSS {idle_rss:.1} MiB",
        args.server.display()
    );
    println!("- settings passed on: {:?}", server::passed_settings());
    println!("- load average at the end: {}", load_average());
    println!(
        "- ListUsers: {} timed sequential calls after {} untimed; floor: the page query the store sends, alone, {} times\n",
        args.iterations, args.warmup, args.iterations
    );
    println!("| figure | service | floor | ratio |\n|---|---|---|---|");
    for (name, figure, floor) in rows {
        println!(
            "| {name} | {} | {} | {} |",
            figure.text(),
            floor.text(),
            figure.ratio(floor)
        );
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|raw| raw.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// The time as the server keeps it: to the microsecond.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}
