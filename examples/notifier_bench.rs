//! How fast the notifier hands the email outbox to a mail server, and how long an invitation
//! waits between InviteUser returning and the mail server accepting its email.
//!
//! Everything runs in this process: the real application (`Application::build`, as
//! `tests/api/helpers/` starts it), a tonic client, and an SMTP sink on 127.0.0.1 built on
//! `mailin-embedded` (one thread per SMTP session, 64 of them) that records
//! the recipient and the `Instant` of every accepted message and counts the SMTP sessions
//! (EHLO/HELO) opened to it.
//!
//! ```text
//! # SMTP alone (no database): the notifier's transport, pooled vs one connection per email
//! cargo run --release --example notifier_bench -- smtp --emails 5000
//! # Drain: fill the outbox with the notifier off, then time a notifier draining it
//! cargo run --release --example notifier_bench -- drain \
//!     --database-url 'sqlite:///tmp/usermgmt_nbench.db?mode=rwc' --emails 5000
//! cargo run --release --example notifier_bench -- drain \
//!     --database-url postgres://postgres@127.0.0.1:5432/usermgmt_nbench --emails 5000
//! # Latency at a steady rate of InviteUser calls
//! cargo run --release --example notifier_bench -- latency \
//!     --database-url 'sqlite:///tmp/usermgmt_nbench.db?mode=rwc' --rate 50 --seconds 30
//! ```
//!
//! The database named by `--database-url` is recreated (a SQLite file is deleted, a
//! PostgreSQL database is dropped and created through the server's `postgres` database).
//! Tables go to stdout, progress to stderr. See `docs/benchmarks.md`.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr, TcpListener},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{TimeDelta, Utc};
use clap::{Parser, Subcommand};
use futures::{StreamExt, TryStreamExt, stream};
use lettre::Message;
use mailin_embedded::{Handler, Response, Server, response};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement, TransactionTrait};
use tokio::sync::{oneshot, watch};
use tonic::{Request, transport::Channel};
use uuid::Uuid;

use usermgmt::{
    app::{AppError, Application},
    clock::{Clock, SystemClock},
    config::{LogFormat, Settings},
    domain::{DisplayName, Email, InvitationEmail, InvitationKind, InvitationSecret, Language},
    grpc::pb::{self, user_management_client::UserManagementClient},
    notifier::{BATCH, Composer, Transport},
    store::{self, Bootstrapped, Store},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const MAIL_FROM: &str = "usermgmt bench <no-reply@bench.example>";
const ACCEPT_URL: &str = "https://console.example/accept-invite";
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Threads of the SMTP sink: the most SMTP sessions it serves at once.
const SINK_THREADS: u32 = 64;
/// The longest any one wait in this benchmark may take.
const WAIT_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Parser)]
#[command(about = "Notifier throughput and invite-to-mail-server latency")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Show the service's logs (RUST_LOG, default info) on stderr; off by default.
    #[arg(long, global = true)]
    log: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// SMTP alone: pre-built invitation emails through the notifier's transport, pooled and
    /// with a connection of their own.
    Smtp {
        #[arg(long, default_value_t = 5000)]
        emails: usize,
        /// Pool sizes (= emails sent at once) of the pooled runs.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
        pool_sizes: Vec<u32>,
        /// Emails sent at once in the one-connection-per-email runs.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        fresh_concurrency: Vec<usize>,
    },
    /// Outbox drain: N invitations queued with the notifier off, then a notifier started on
    /// the same database and timed until the sink has all N; then its database work alone.
    Drain {
        /// `sqlite:///path/file.db?mode=rwc` or `postgres://user@host:port/name`; recreated.
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 5000)]
        emails: usize,
        /// `USERMGMT_SMTP_POOL_SIZE` of each timed drain.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
        pool_sizes: Vec<u32>,
        /// InviteUser calls at once while filling the outbox.
        #[arg(long, default_value_t = 16)]
        fill_concurrency: usize,
    },
    /// Latency from InviteUser returning to the sink accepting that invitee's email, at a
    /// steady rate of invitations (open loop: a slow call does not delay the next).
    Latency {
        /// `sqlite:///path/file.db?mode=rwc` or `postgres://user@host:port/name`; recreated.
        #[arg(long)]
        database_url: String,
        /// InviteUser calls per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// `USERMGMT_SMTP_POOL_SIZE` (the service's default is 8).
        #[arg(long, default_value_t = 8)]
        pool_size: u32,
        /// Invitations at the same rate before the measured ones, not counted.
        #[arg(long, default_value_t = 50)]
        warmup: usize,
    },
}

// ---------------------------------------------------------------------------------------
// The SMTP sink

#[derive(Default)]
struct SinkState {
    sessions: AtomicU64,
    /// Each accepted message's first recipient and when its DATA was accepted.
    arrivals: Mutex<Vec<(String, Instant)>>,
}

impl SinkState {
    fn arrivals(&self) -> std::sync::MutexGuard<'_, Vec<(String, Instant)>> {
        self.arrivals.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone)]
struct SinkSession {
    state: Arc<SinkState>,
    accepted: Arc<watch::Sender<u64>>,
    to: String,
}

impl Handler for SinkSession {
    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> Response {
        self.state.sessions.fetch_add(1, Ordering::Relaxed);
        response::OK
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to
            .first()
            .map(|to| to.trim_matches(['<', '>']).to_lowercase())
            .unwrap_or_default();
        response::OK
    }

    fn data_end(&mut self) -> Response {
        let now = Instant::now();
        let mut arrivals = self.state.arrivals();
        arrivals.push((std::mem::take(&mut self.to), now));
        self.accepted.send_replace(arrivals.len() as u64);
        response::OK
    }
}

/// Lives as long as the process: mailin-embedded serves until the process exits.
struct Sink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    accepted: Arc<watch::Sender<u64>>,
}

impl Sink {
    fn start(threads: u32) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SinkState::default());
        let accepted = Arc::new(watch::Sender::new(0));
        let mut server = Server::new(SinkSession {
            state: state.clone(),
            accepted: accepted.clone(),
            to: String::new(),
        });
        server
            .with_name("sink.bench")
            .with_num_threads(threads)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            if let Err(error) = server.serve() {
                eprintln!("SMTP sink stopped: {error}");
            }
        });
        Ok(Self {
            addr,
            state,
            accepted,
        })
    }

    fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    fn reset(&self) {
        let mut arrivals = self.state.arrivals();
        arrivals.clear();
        self.state.sessions.store(0, Ordering::SeqCst);
        self.accepted.send_replace(0);
    }

    fn sessions(&self) -> u64 {
        self.state.sessions.load(Ordering::SeqCst)
    }

    async fn wait_for(&self, n: u64, limit: Duration) -> Result<()> {
        let mut accepted = self.accepted.subscribe();
        match tokio::time::timeout(limit, accepted.wait_for(|seen| *seen >= n)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err("the SMTP sink stopped".into()),
            Err(_) => {
                let seen = *self.accepted.borrow();
                Err(format!("only {seen} of {n} emails arrived within {limit:?}").into())
            }
        }
    }

    /// When each recipient's email was accepted.
    fn arrivals(&self) -> HashMap<String, Instant> {
        self.state.arrivals().iter().cloned().collect()
    }
}

// ---------------------------------------------------------------------------------------
// CPU use from /proc, and what else runs on the machine

/// The numbers on the first line of a `/proc` stat file, after the process name if any;
/// what is not a number counts as 0.
fn proc_numbers(path: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text.lines().next().unwrap_or_default();
    let rest = line.rsplit_once(')').map_or(line, |(_, rest)| rest);
    rest.split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect()
}

/// CPU time so far (1/100 s) of this process, of the whole machine, and the machine's iowait.
fn cpu_ticks() -> [u64; 3] {
    // /proc/self/stat after "(name)": state ppid … utime (11) stime (12).
    let process = proc_numbers("/proc/self/stat");
    // /proc/stat: cpu user nice system idle (4) iowait (5) irq softirq steal.
    let machine = proc_numbers("/proc/stat");
    let at = |numbers: &[u64], i: usize| numbers.get(i).copied().unwrap_or(0);
    let total: u64 = machine.iter().skip(1).take(8).sum();
    let iowait = at(&machine, 5);
    [
        at(&process, 11) + at(&process, 12),
        total.saturating_sub(at(&machine, 4) + iowait),
        iowait,
    ]
}

/// CPU used since `start`, in cores (1.0 = one core busy the whole time).
struct Cpu {
    wall: Instant,
    ticks: [u64; 3],
}

impl Cpu {
    fn start() -> Self {
        let ticks = cpu_ticks();
        let wall = Instant::now();
        Self { wall, ticks }
    }

    /// "this process / whole machine / iowait", in cores of 2.
    fn used(&self) -> String {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let now = cpu_ticks();
        let cores = |i: usize| now[i].saturating_sub(self.ticks[i]) as f64 / 100.0 / wall;
        format!("{:.2} / {:.2} / {:.2}", cores(0), cores(1), cores(2))
    }
}

/// Other compilers or test runs on this 2-core machine would distort the numbers: say so.
fn machine_load_note() -> String {
    const BUSY: [&str; 6] = [
        "rustc",
        "cargo",
        "ld",
        "clippy-driver",
        "pytest",
        "cargo-nextest",
    ];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let mut busy: Vec<String> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("comm")).ok())
        .map(|comm| comm.trim().to_string())
        .filter(|comm| BUSY.contains(&comm.as_str()))
        .collect();
    busy.sort();
    busy.dedup();
    let busy = if busy.is_empty() {
        "none".to_string()
    } else {
        busy.join(",")
    };
    format!("loadavg {}; build/test processes: {busy}", load.join(" "))
}

// ---------------------------------------------------------------------------------------
// Emails as the notifier builds them

/// An invitation email as the store queues it.
fn payload(to: &str, name: &str) -> InvitationEmail {
    InvitationEmail {
        kind: InvitationKind::NewUser,
        to: to.into(),
        invitee_name: name.into(),
        language: Language::En,
        account_name: "Bench".into(),
        inviter_name: "Bench Admin".into(),
        expires_at: Utc::now() + TimeDelta::hours(24),
        secret: Some(InvitationSecret::generate().expose().into()),
    }
}

fn invitee(prefix: &str, i: usize) -> (String, String) {
    (
        format!("{prefix}-{i:06}@example.com"),
        format!("Invitee {prefix} {i}"),
    )
}

// ---------------------------------------------------------------------------------------
// Statistics

/// min, median, p95, p99, max (nearest rank) and mean.
fn summarize(values: &[f64]) -> [f64; 6] {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let [min, p50, p95, p99, max] = [0.0, 50.0, 95.0, 99.0, 100.0].map(|p: f64| {
        let rank = (p / 100.0 * n as f64).ceil() as usize;
        sorted
            .get(rank.clamp(1, n.max(1)) - 1)
            .copied()
            .unwrap_or(f64::NAN)
    });
    let mean = sorted.iter().sum::<f64>() / n.max(1) as f64;
    [min, p50, p95, p99, max, mean]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `later - earlier` in milliseconds, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(after) => ms(after),
        None => -ms(earlier.duration_since(later)),
    }
}

// ---------------------------------------------------------------------------------------
// Databases and the application

fn engine(url: &str) -> &'static str {
    if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}

/// Deletes and recreates the scratch database the URL names.
async fn recreate_database(url: &str) -> Result<()> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path.contains(":memory:") {
            return Err(
                "give a SQLite file, e.g. sqlite:///tmp/usermgmt_nbench.db?mode=rwc".into(),
            );
        }
        for suffix in ["", "-journal", "-wal", "-shm"] {
            match std::fs::remove_file(format!("{path}{suffix}")) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error.into()),
                _ => {}
            }
        }
        return Ok(());
    }
    let base = url.split('?').next().unwrap_or(url);
    let (server, name) = base
        .rsplit_once('/')
        .filter(|_| url.starts_with("postgres://") || url.starts_with("postgresql://"))
        .ok_or("--database-url must be sqlite://… or postgres://…")?;
    let scratch = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    if name.is_empty() || name == "postgres" || !name.chars().all(scratch) {
        return Err(format!("{name:?}: name a scratch database ([a-z0-9_]+, not postgres)").into());
    }
    let admin = Database::connect(format!("{server}/postgres")).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    admin.close().await?;
    Ok(())
}

fn settings(database_url: &str, sink: &Sink, notifier: bool, pool_size: u32) -> Settings {
    let mut settings = Settings::for_database(database_url);
    settings.mail.smtp_url = Some(sink.url().into());
    settings.mail.from = MAIL_FROM.into();
    settings.mail.accept_url = ACCEPT_URL.into();
    settings.mail.smtp_pool_size = pool_size;
    settings.mail.smtp_timeout = SMTP_TIMEOUT;
    settings.notifier.enabled = notifier;
    // The benchmark invites far more than an account's daily quota.
    settings.invitations.quota = usermgmt::config::QuotaSetting(None);
    settings
}

struct RunningApp {
    db: DatabaseConnection,
    client: UserManagementClient<Channel>,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), AppError>>,
}

impl RunningApp {
    /// Builds (connects, migrates, binds), then serves; returns with `started` = the moment
    /// just before serving (and so the notifier) began.
    async fn start(settings: &Settings) -> Result<(Self, Instant)> {
        let app = Application::build(settings).await?;
        let addr = app.local_addr();
        let db = app.db().clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let started = Instant::now();
        let task = tokio::spawn(app.run_until_stopped(async {
            stopped.await.ok();
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let client = UserManagementClient::new(channel);
        let app = Self {
            db,
            client,
            shutdown,
            task,
        };
        Ok((app, started))
    }

    /// Stops serving; the notifier finishes the sends in progress.
    async fn stop(self) -> Result<()> {
        drop(self.client);
        self.shutdown.send(()).ok();
        tokio::time::timeout(WAIT_LIMIT, self.task).await???;
        Ok(())
    }
}

async fn bootstrap(db: &DatabaseConnection) -> Result<Bootstrapped> {
    let admin = Email::parse("admin@bench.example")?;
    let name = DisplayName::parse("Bench Admin")?;
    let now = SystemClock.now();
    let account = DisplayName::parse("Bench")?;
    Ok(Store::new(db.clone())
        .create_account(&account, &admin, &name, now)
        .await?)
}

fn invite_request(
    account: &Bootstrapped,
    email: &str,
    name: &str,
) -> Result<Request<pb::InviteUserRequest>> {
    let mut request = Request::new(pb::InviteUserRequest {
        account_id: account.account_id.to_string(),
        name: name.into(),
        email: email.into(),
        language: pb::Language::En as i32,
        role: pb::Role::Users as i32,
        cloud_access: None,
        request_id: None,
        ..Default::default()
    });
    let authorization = format!("APIKey {}", account.api_token.expose()).parse()?;
    request
        .metadata_mut()
        .insert("authorization", authorization);
    Ok(request)
}

// ---------------------------------------------------------------------------------------
// smtp

/// Hands one email to the sink through the notifier's own transport (so on connections with
/// `TCP_NODELAY`, speaking the same SMTP): through `pooled`, a `Transport::smtp(url,
/// pool_size, timeout)` as the notifier builds it, which keeps its connections; or, without
/// one, through a new `Transport::smtp(url, 1, timeout)` that connects, says EHLO, sends,
/// and closes its connection when it is dropped.
async fn send(sink: &Sink, pooled: Option<&Transport>, message: Message) -> Result<(), String> {
    match pooled {
        Some(transport) => transport
            .send(Uuid::nil(), message)
            .await
            .map_err(|e| e.message),
        None => {
            let transport = Transport::smtp(&sink.url(), 1, SMTP_TIMEOUT, None)?;
            transport
                .send(Uuid::nil(), message)
                .await
                .map_err(|e| e.message)
        }
    }
}

/// Sends every message, `at_once` at a time; prints one table row.
async fn smtp_run(
    sink: &Sink,
    pooled: Option<Transport>,
    label: &str,
    at_once: usize,
    messages: &[Message],
) -> Result<()> {
    sink.reset();
    let failed = AtomicU64::new(0);
    let cpu = Cpu::start();
    let started = Instant::now();
    stream::iter(messages.iter().cloned())
        .for_each_concurrent(at_once, |message| {
            let (pooled, failed) = (pooled.as_ref(), &failed);
            async move {
                if let Err(error) = send(sink, pooled, message).await {
                    eprintln!("send failed: {error}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    let sent = messages.len() - failed.load(Ordering::Relaxed) as usize;
    sink.wait_for(sent as u64, WAIT_LIMIT).await?;
    let elapsed = started.elapsed();
    let cpu = cpu.used();
    drop(pooled);
    println!(
        "| {label} | {at_once} | {} | {:.0} | {:.3} | {} | {} | {cpu} |",
        messages.len(),
        sent as f64 / elapsed.as_secs_f64(),
        ms(elapsed) * at_once as f64 / messages.len() as f64,
        sink.sessions(),
        messages.len() - sent,
    );
    // Let the sink see the closed connections before the next run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

async fn smtp_command(
    sink: &Sink,
    emails: usize,
    pool_sizes: &[u32],
    fresh: &[usize],
) -> Result<()> {
    let payloads: Vec<InvitationEmail> = (0..emails)
        .map(|i| {
            let (to, name) = invitee("smtp", i);
            payload(&to, &name)
        })
        .collect();
    // Rendering alone, on one core: payload → Message, and the bytes lettre will send.
    let composer = Composer::new(MAIL_FROM, ACCEPT_URL)?;
    let started = Instant::now();
    let messages = payloads
        .iter()
        .map(|payload| composer.compose(Uuid::now_v7(), payload))
        .collect::<Result<Vec<_>, String>>()?;
    let bytes: usize = messages.iter().map(|m| m.formatted().len()).sum();
    let render = started.elapsed().as_secs_f64() * 1e6 / emails.max(1) as f64;
    let pooled = |size| Transport::smtp(&sink.url(), size, SMTP_TIMEOUT, None);

    println!("\n### SMTP alone: {emails} pre-built invitation emails, no database\n");
    println!("{}\n", machine_load_note());
    println!(
        "Render + build + format, one core: {render:.1} µs per email; {} bytes per email.\n",
        bytes / emails.max(1)
    );
    println!(
        "| notifier's transport | emails at once | emails | emails/s | mean per email at its concurrency (ms) | SMTP sessions | failed | CPU: this process / machine / iowait (cores of 2) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    // Warm-up: first connections, page faults, sink threads.
    let warmup = &messages[..emails.min(500)];
    let label = "warm-up, pool size 4 (not counted)";
    smtp_run(sink, Some(pooled(4)?), label, 4, warmup).await?;
    for &size in pool_sizes {
        let label = format!("pooled, pool size {size}");
        smtp_run(sink, Some(pooled(size)?), &label, size as usize, &messages).await?;
    }
    for &at_once in fresh {
        smtp_run(sink, None, "one connection per email", at_once, &messages).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// drain

const COPY: &str = "bench_outbox_copy";

/// Queues `emails` invitations through InviteUser with the notifier off, and keeps a copy
/// of the outbox to restore before each run. Returns the time the calls took.
async fn fill_outbox(url: &str, sink: &Sink, emails: usize, at_once: usize) -> Result<Duration> {
    let (app, _) = RunningApp::start(&settings(url, sink, false, 8)).await?;
    let account = bootstrap(&app.db).await?;
    let started = Instant::now();
    stream::iter(0..emails)
        .map(|i| {
            let (to, name) = invitee("drain", i);
            let request = invite_request(&account, &to, &name);
            let mut client = app.client.clone();
            async move {
                client.invite_user(request?).await?;
                Ok::<(), BoxError>(())
            }
        })
        .buffer_unordered(at_once)
        .try_collect::<Vec<()>>()
        .await?;
    let elapsed = started.elapsed();
    app.stop().await?;
    let db = store::connect(url).await?;
    db.execute_unprepared(&format!("CREATE TABLE {COPY} AS SELECT * FROM outbox"))
        .await?;
    db.close().await?;
    Ok(elapsed)
}

/// Puts the outbox back as it was filled: every email queued, none claimed.
async fn restore_outbox(url: &str) -> Result<()> {
    let db = store::connect(url).await?;
    let tx = db.begin().await?;
    tx.execute_unprepared("DELETE FROM outbox").await?;
    tx.execute_unprepared(&format!("INSERT INTO outbox SELECT * FROM {COPY}"))
        .await?;
    tx.commit().await?;
    if url.starts_with("postgres") {
        db.execute_unprepared("VACUUM ANALYZE outbox").await?;
    }
    db.close().await?;
    Ok(())
}

/// Rows of the outbox that are sent, were retried, are dead.
async fn check_outbox(url: &str) -> Result<[i64; 3]> {
    let db = store::connect(url).await?;
    let mut counts = [0; 3];
    for (count, filter) in
        counts
            .iter_mut()
            .zip(["sent_at IS NOT NULL", "attempts > 1", "dead_at IS NOT NULL"])
    {
        let sql = format!("SELECT COUNT(*) FROM outbox WHERE {filter}");
        let statement = Statement::from_string(db.get_database_backend(), sql);
        let row = db.query_one_raw(statement).await?.ok_or("no row")?;
        *count = row.try_get_by_index::<i64>(0)?;
    }
    db.close().await?;
    Ok(counts)
}

/// Starts the application with the notifier on over the restored outbox; the clock runs
/// from just before it serves until the sink has accepted the last email. Prints a row.
async fn timed_drain(url: &str, sink: &Sink, emails: usize, pool: u32) -> Result<()> {
    restore_outbox(url).await?;
    sink.reset();
    let cpu = Cpu::start();
    let (app, started) = RunningApp::start(&settings(url, sink, true, pool)).await?;
    sink.wait_for(emails as u64, WAIT_LIMIT).await?;
    let cpu = cpu.used();
    let arrivals = sink.arrivals();
    let first = arrivals.values().min().map_or(0.0, |at| ms(*at - started));
    let elapsed = arrivals
        .values()
        .max()
        .map_or(Duration::ZERO, |at| *at - started);
    let sessions = sink.sessions();
    app.stop().await?;
    let [sent, retried, dead] = check_outbox(url).await?;
    println!(
        "| {pool} | {:.2} | {:.0} | {first:.1} | {sessions} | {sent} | {retried} | {dead} | {cpu} |",
        elapsed.as_secs_f64(),
        emails as f64 / elapsed.as_secs_f64(),
    );
    Ok(())
}

/// The notifier's database work alone: claim 64, mark each email sent, `at_once` at a
/// time, until the outbox is empty. Prints a row.
async fn db_only(url: &str, emails: usize, at_once: usize) -> Result<()> {
    restore_outbox(url).await?;
    let store = Store::connect(url).await?;
    let mut claims = Vec::new();
    let mut marks = Vec::new();
    let mut claimed = 0;
    let cpu = Cpu::start();
    let started = Instant::now();
    loop {
        let claim_started = Instant::now();
        let batch = store
            .claim_emails(SystemClock.now(), chrono::TimeDelta::seconds(15), BATCH)
            .await?;
        claims.push(ms(claim_started.elapsed()));
        if batch.is_empty() {
            break;
        }
        claimed += batch.len();
        let store = &store;
        let batch_marks: Vec<f64> = stream::iter(batch)
            .map(|email| async move {
                let mark_started = Instant::now();
                store.mark_sent(&email, SystemClock.now()).await?;
                Ok::<_, BoxError>(ms(mark_started.elapsed()))
            })
            .buffer_unordered(at_once)
            .try_collect()
            .await?;
        marks.extend(batch_marks);
    }
    let elapsed = started.elapsed();
    let cpu = cpu.used();
    store.close().await?;
    if claimed != emails {
        return Err(format!("claimed {claimed} of {emails} emails").into());
    }
    let claims = summarize(&claims);
    let marks = summarize(&marks);
    println!(
        "| {at_once} at once | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {cpu} |",
        emails as f64 / elapsed.as_secs_f64(),
        claims[5],
        claims[3],
        marks[5],
        marks[3],
    );
    Ok(())
}

async fn drain_command(
    sink: &Sink,
    url: &str,
    emails: usize,
    pool_sizes: &[u32],
    fill_at_once: usize,
) -> Result<()> {
    recreate_database(url).await?;
    eprintln!("filling the outbox with {emails} invitations …");
    let fill = fill_outbox(url, sink, emails, fill_at_once).await?;

    println!(
        "\n### Drain on {}: {emails} queued invitation emails\n",
        engine(url)
    );
    println!("{}\n", machine_load_note());
    println!(
        "Filling the outbox (notifier off): {:.0} InviteUser/s at {fill_at_once} calls at once.\n",
        emails as f64 / fill.as_secs_f64()
    );
    println!(
        "| USERMGMT_SMTP_POOL_SIZE | drained in (s) | emails/s | first email after (ms) | SMTP sessions | marked sent | retried | dead | CPU: this process / machine / iowait (cores of 2) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for &pool in pool_sizes {
        eprintln!("drain, pool size {pool} …");
        timed_drain(url, sink, emails, pool).await?;
    }

    eprintln!("the database alone …");
    println!("\nThe notifier's database work alone, on the same {emails} rows:\n");
    println!(
        "| claim 64, then mark_sent per email | emails/s | claim of 64: mean / p99 (ms) | mark_sent: mean / p99 (ms) | CPU: this process / machine / iowait (cores of 2) |"
    );
    println!("|---|---:|---:|---:|---|");
    db_only(url, emails, 1).await?;
    db_only(url, emails, 8).await?;
    println!("\n{}", machine_load_note());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// latency

/// One InviteUser call that succeeded: the invitee, how late it started against the
/// schedule (ms), how long it took (ms), and when it returned.
type Call = (String, f64, f64, Instant);

/// `count` InviteUser calls at `rate` per second, each on its own task; the failed ones
/// are `None`.
async fn invite_at_rate(
    app: &RunningApp,
    account: &Bootstrapped,
    prefix: &str,
    count: usize,
    rate: f64,
) -> Result<Vec<Option<Call>>> {
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(scheduled.into()).await;
        let (email, name) = invitee(prefix, i);
        let request = invite_request(account, &email, &name)?;
        let mut client = app.client.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = client.invite_user(request).await.is_ok();
            let returned = Instant::now();
            let lag = signed_ms(sent, scheduled);
            ok.then(|| (email, lag, ms(returned - sent), returned))
        }));
    }
    let mut calls = Vec::with_capacity(count);
    for task in tasks {
        calls.push(task.await?);
    }
    Ok(calls)
}

fn print_summary_row(label: &str, values: &[f64]) {
    let n = values.len();
    let [min, p50, p95, p99, max, mean] = summarize(values);
    println!(
        "| {label} | {n} | {min:.1} | {p50:.1} | {p95:.1} | {p99:.1} | {max:.1} | {mean:.1} |"
    );
}

async fn latency_command(
    sink: &Sink,
    url: &str,
    rate: f64,
    seconds: u64,
    pool_size: u32,
    warmup: usize,
) -> Result<()> {
    recreate_database(url).await?;
    let (app, _) = RunningApp::start(&settings(url, sink, true, pool_size)).await?;
    let account = bootstrap(&app.db).await?;
    sink.reset();
    if warmup > 0 {
        eprintln!("warm-up: {warmup} invitations");
        invite_at_rate(&app, &account, "warmup", warmup, rate).await?;
        sink.wait_for(warmup as u64, WAIT_LIMIT).await?;
    }
    sink.reset();
    let count = (rate * seconds as f64).round() as usize;
    let load = machine_load_note();
    eprintln!("{count} invitations at {rate}/s …");
    let cpu = Cpu::start();
    let calls = invite_at_rate(&app, &account, "latency", count, rate).await?;
    let calls: Vec<Call> = calls.into_iter().flatten().collect();
    let ok = calls.len();
    let waited = sink.wait_for(ok as u64, Duration::from_secs(120)).await;
    let cpu = cpu.used();
    let arrivals = sink.arrivals();
    let sessions = sink.sessions();
    app.stop().await?;
    waited?;
    let [sent, retried, dead] = check_outbox(url).await?;

    let to_mail: Vec<f64> = calls
        .iter()
        .filter_map(|(email, _, _, returned)| Some(signed_ms(*arrivals.get(email)?, *returned)))
        .collect();
    let lag_ms: Vec<f64> = calls.iter().map(|call| call.1).collect();
    let call_ms: Vec<f64> = calls.iter().map(|call| call.2).collect();
    println!(
        "\n### Latency on {}: {count} invitations at {rate}/s for {seconds} s, USERMGMT_SMTP_POOL_SIZE={pool_size}\n",
        engine(url)
    );
    println!(
        "{load} (at the start); {} (at the end)\n",
        machine_load_note()
    );
    println!(
        "{ok} calls succeeded, {} failed; {} emails not matched at the sink; new SMTP sessions: {sessions}; outbox: {sent} sent, {retried} retried, {dead} dead; CPU this process / machine / iowait: {cpu} cores of 2.\n",
        count - ok,
        ok - to_mail.len(),
    );
    println!("| ms | n | min | median | p95 | p99 | max | mean |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    print_summary_row("InviteUser returned → sink accepted the email", &to_mail);
    print_summary_row("InviteUser call (client side)", &call_ms);
    print_summary_row("call started after its scheduled time", &lag_ms);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.log {
        usermgmt::telemetry::init(LogFormat::Text);
    }
    let sink = Sink::start(SINK_THREADS)?;
    eprintln!("SMTP sink on {} with {} threads", sink.addr, SINK_THREADS);
    match cli.command {
        Command::Smtp {
            emails,
            pool_sizes,
            fresh_concurrency,
        } => smtp_command(&sink, emails, &pool_sizes, &fresh_concurrency).await,
        Command::Drain {
            database_url,
            emails,
            pool_sizes,
            fill_concurrency,
        } => drain_command(&sink, &database_url, emails, &pool_sizes, fill_concurrency).await,
        Command::Latency {
            database_url,
            rate,
            seconds,
            pool_size,
            warmup,
        } => latency_command(&sink, &database_url, rate, seconds, pool_size, warmup).await,
    }
}
