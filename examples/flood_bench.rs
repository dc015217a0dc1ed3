//! One client floods GetUser; does a second client still get its answers in time?
//!
//! Starts the real server in-process on 127.0.0.1:0 (as `tests/api/helpers` does) on its
//! own runtime, bootstraps an account, then runs these phases, each `--phase` long:
//!
//! 1. quiet: the probe alone;
//! 2. a tonic client holding `--flood-connections` × `--flood-streams` concurrent GetUser
//!    calls with an unknown (well-formed) API token;
//! 3. the same flood with a valid token;
//! 4. `h2load` on the health RPC (the floor: the cheapest call the server answers), and
//!    `h2load` on GetUser with an unknown token (the issue's original measurement).
//!
//! The probe is a second client on its own connection and runtime calling GetUser with the
//! administrator's token, one call after the other. The flood runs on a runtime of its own
//! too, so neither client waits for the other's tasks: what they share is the server.
//!
//! ```text
//! cargo run --release --example flood_bench -- \
//!     --database-url 'sqlite:///tmp/usermgmt_flood.db?mode=rwc'
//! cargo run --release --example flood_bench -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/usermgmt_flood
//! # "before": every limit off
//! cargo run --release --example flood_bench -- --limits off --database-url …
//! ```
//!
//! A PostgreSQL database that does not exist is created. Tables go to stdout, progress to
//! stderr.

#[path = "support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    io::Write,
    net::SocketAddr,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};
use prost::Message;
use tokio::{runtime::Runtime, sync::oneshot, task::JoinSet};
use tonic::{Code, Request, transport::Channel};
use uuid::Uuid;

use usermgmt::{
    app::Application,
    config::Settings,
    domain::{ApiTokenSecret, DisplayName, Email},
    grpc::pb::{self, user_management_client::UserManagementClient},
    service::NewAccount,
};

#[derive(Debug, Parser)]
#[command(about = "Floods GetUser and measures a second client's latency")]
struct Args {
    /// `postgres://…/<database>` (created when missing) or `sqlite://<file>?mode=rwc`.
    #[arg(long)]
    database_url: String,
    /// HTTP/2 connections of the flooding client.
    #[arg(long, default_value_t = 4)]
    flood_connections: usize,
    /// Concurrent calls the flooding client keeps on each connection.
    #[arg(long, default_value_t = 250)]
    flood_streams: usize,
    /// How long the probe measures in each phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    phase: Duration,
    /// How long a flood runs before the probe's measurement starts.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// `on`: the server's default limits; `off`: none (no in-flight or per-connection
    /// limit, unlimited streams, a one-hour deadline), an approximation of the code before
    /// the limits.
    #[arg(long, value_enum, default_value_t = Limits::On)]
    limits: Limits,
    /// Overrides the server's in-flight limit (0: none).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Overrides the server's per-connection limit (0: none).
    #[arg(long)]
    max_calls_per_connection: Option<usize>,
    /// Overrides the server's per-caller share (0: none).
    #[arg(long)]
    max_calls_per_caller: Option<usize>,
    /// The h2load program; `none` skips the h2load phases.
    #[arg(long, default_value = "h2load")]
    h2load: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Limits {
    On,
    Off,
}

/// What every call names: the account, the user looked up, and the tokens.
#[derive(Clone)]
struct Fixture {
    addr: SocketAddr,
    account_id: Uuid,
    user_id: Uuid,
    probe_token: String,
    flood_token: String,
    unknown_token: String,
}

impl Fixture {
    fn get_user(&self, token: &str) -> Request<pb::GetUserRequest> {
        let mut request = Request::new(self.message());
        let value = format!("APIKey {token}").parse().expect("ASCII metadata");
        request.metadata_mut().insert("authorization", value);
        request
    }

    fn message(&self) -> pb::GetUserRequest {
        pb::GetUserRequest {
            account_id: self.account_id.to_string(),
            user_id: self.user_id.to_string(),
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("a valid URI")
            .connect()
            .await
            .expect("connect to the server")
    }
}

/// Latencies of calls, by how they ended.
#[derive(Default)]
struct Outcomes {
    by_code: BTreeMap<String, Vec<Duration>>,
    /// The first message seen of each code but OK.
    messages: BTreeMap<String, String>,
    elapsed: Duration,
}

impl Outcomes {
    fn record<T>(&mut self, outcome: &Result<T, tonic::Status>, latency: Duration) {
        let code = match outcome {
            Ok(_) => Code::Ok,
            Err(status) => {
                self.messages
                    .entry(format!("{:?}", status.code()))
                    .or_insert_with(|| status.message().to_string());
                status.code()
            }
        };
        self.by_code
            .entry(format!("{code:?}"))
            .or_default()
            .push(latency);
    }

    fn merge(&mut self, other: Outcomes) {
        for (code, latencies) in other.by_code {
            self.by_code.entry(code).or_default().extend(latencies);
        }
        for (code, message) in other.messages {
            self.messages.entry(code).or_insert(message);
        }
    }

    fn all(&self) -> Vec<Duration> {
        self.by_code.values().flatten().copied().collect()
    }

    fn count(&self) -> usize {
        self.by_code.values().map(Vec::len).sum()
    }

    fn failures(&self) -> usize {
        self.count() - self.by_code.get("Ok").map_or(0, Vec::len)
    }
}

/// The value at or below which `p` percent of the latencies lie (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

struct Summary {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn summary(mut latencies: Vec<Duration>) -> Summary {
    latencies.sort();
    Summary {
        n: latencies.len(),
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        max: latencies.last().copied().unwrap_or_default(),
    }
}

/// The probe: sequential GetUser calls on a connection of its own, for `duration`.
async fn probe(fixture: Fixture, duration: Duration) -> Outcomes {
    let mut client = UserManagementClient::new(fixture.channel().await);
    let mut outcomes = Outcomes::default();
    let started = Instant::now();
    while started.elapsed() < duration {
        let call = Instant::now();
        let outcome = client
            .get_user(fixture.get_user(&fixture.probe_token))
            .await;
        outcomes.record(&outcome, call.elapsed());
    }
    outcomes.elapsed = started.elapsed();
    outcomes
}

/// The flood: `connections` HTTP/2 connections, each with `streams` calls kept in flight
/// until `stop`.
async fn flood(
    fixture: Fixture,
    token: String,
    connections: usize,
    streams: usize,
    stop: Arc<AtomicBool>,
) -> Outcomes {
    let started = Instant::now();
    let mut callers = JoinSet::new();
    for _ in 0..connections {
        let channel = fixture.channel().await;
        for _ in 0..streams {
            let mut client = UserManagementClient::new(channel.clone());
            let (fixture, token, stop) = (fixture.clone(), token.clone(), stop.clone());
            callers.spawn(async move {
                let mut outcomes = Outcomes::default();
                while !stop.load(Ordering::Relaxed) {
                    let call = Instant::now();
                    let outcome = client.get_user(fixture.get_user(&token)).await;
                    outcomes.record(&outcome, call.elapsed());
                }
                outcomes
            });
        }
    }
    let mut all = Outcomes::default();
    while let Some(outcomes) = callers.join_next().await {
        all.merge(outcomes.expect("a flooding task"));
    }
    all.elapsed = started.elapsed();
    all
}

/// The 1-minute load average and any compiler or test run sharing the machine.
fn machine_state() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let busy = Command::new("pgrep")
        .args(["-c", "rustc|cargo|nextest|pytest|h2load"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "load average {}, compiler/test/h2load processes: {busy}",
        load.split_whitespace().next().unwrap_or("?")
    )
}

struct Phase {
    name: String,
    probe: Outcomes,
    flood: Option<Outcomes>,
    flood_note: String,
}

struct Bench {
    args: Args,
    fixture: Fixture,
    probe_runtime: Runtime,
    flood_runtime: Runtime,
}

impl Bench {
    fn quiet(&self) -> Phase {
        eprintln!("quiet: {}", machine_state());
        let probe = self
            .probe_runtime
            .block_on(probe(self.fixture.clone(), self.args.phase));
        Phase {
            name: "quiet".into(),
            probe,
            flood: None,
            flood_note: String::new(),
        }
    }

    fn tonic_flood(&self, name: &str, token: &str) -> Phase {
        eprintln!("{name}: {}", machine_state());
        let stop = Arc::new(AtomicBool::new(false));
        let flooding = self.flood_runtime.spawn(flood(
            self.fixture.clone(),
            token.to_string(),
            self.args.flood_connections,
            self.args.flood_streams,
            stop.clone(),
        ));
        let probe = self.probe_runtime.block_on(async {
            tokio::time::sleep(self.args.settle).await;
            probe(self.fixture.clone(), self.args.phase).await
        });
        stop.store(true, Ordering::Relaxed);
        let flood = self
            .flood_runtime
            .block_on(flooding)
            .expect("the flood ends");
        Phase {
            name: name.into(),
            probe,
            flood: Some(flood),
            flood_note: format!(
                "tonic, {} connections × {} calls",
                self.args.flood_connections, self.args.flood_streams
            ),
        }
    }

    /// h2load for `settle` + `phase` on one RPC with one request body, the probe measuring
    /// after `settle`.
    fn h2load_flood(&self, name: &str, path: &str, body: &[u8], token: Option<&str>) -> Phase {
        eprintln!("{name}: {}", machine_state());
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        file.write_all(body).expect("write the request body");
        let seconds = (self.args.settle + self.args.phase).as_secs().max(1);
        let mut command = Command::new(&self.args.h2load);
        command
            .args(["-c", &self.args.flood_connections.to_string()])
            .args(["-m", &self.args.flood_streams.to_string()])
            .args(["-D", &seconds.to_string()])
            .arg("-d")
            .arg(file.path())
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers"]);
        if let Some(token) = token {
            command.args(["-H", &format!("authorization: APIKey {token}")]);
        }
        command.arg(format!("http://{}{path}", self.fixture.addr));
        let h2load = std::thread::spawn(move || command.output());
        let probe = self.probe_runtime.block_on(async {
            tokio::time::sleep(self.args.settle).await;
            probe(self.fixture.clone(), self.args.phase).await
        });
        let output = h2load
            .join()
            .expect("the h2load thread")
            .expect("h2load runs");
        let report = String::from_utf8_lossy(&output.stdout);
        let note = report
            .lines()
            .filter(|line| {
                line.starts_with("finished in")
                    || line.starts_with("requests:")
                    || line.starts_with("time for request:")
            })
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ");
        Phase {
            name: name.into(),
            probe,
            flood: None,
            flood_note: format!("h2load: {note}"),
        }
    }
}

/// A gRPC request body: uncompressed, its length, the message.
fn grpc_frame(message: &impl Message) -> Vec<u8> {
    let encoded = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(encoded.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&encoded);
    frame
}

fn print_report(phases: &[Phase]) {
    let quiet_p99 = phases
        .iter()
        .find(|phase| phase.name == "quiet")
        .map(|phase| summary(phase.probe.all()).p99);
    println!("\n### The probe: sequential GetUser on its own connection\n");
    println!(
        "| phase | calls | failures | p50 ms | p99 ms | max ms | p99 / quiet p99 |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for phase in phases {
        let s = summary(phase.probe.all());
        let ratio = quiet_p99
            .filter(|quiet| !quiet.is_zero())
            .map_or("–".into(), |quiet| {
                format!("{:.1}×", s.p99.as_secs_f64() / quiet.as_secs_f64())
            });
        let failures = phase.probe.failures();
        let failed = phase
            .probe
            .by_code
            .iter()
            .filter(|(code, _)| *code != "Ok")
            .map(|(code, latencies)| format!("{code} {}", latencies.len()))
            .collect::<Vec<_>>();
        let failures = if failed.is_empty() {
            failures.to_string()
        } else {
            format!("{failures} ({})", failed.join(", "))
        };
        println!(
            "| {} | {} | {failures} | {} | {} | {} | {ratio} |",
            phase.name,
            s.n,
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        );
    }
    println!("\n### The flood: how its calls ended\n");
    println!(
        "| phase | code | calls | calls/s | p50 ms | p99 ms | max ms |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for phase in phases {
        let Some(flood) = &phase.flood else {
            continue;
        };
        for (code, latencies) in &flood.by_code {
            let s = summary(latencies.clone());
            println!(
                "| {} | {code} | {} | {:.0} | {} | {} | {} |",
                phase.name,
                s.n,
                s.n as f64 / flood.elapsed.as_secs_f64(),
                ms(s.p50),
                ms(s.p99),
                ms(s.max)
            );
        }
    }
    println!();
    for phase in phases.iter().filter(|phase| !phase.flood_note.is_empty()) {
        println!("- {}: {}", phase.name, phase.flood_note);
    }
    for phase in phases {
        let outcomes = [Some(&phase.probe), phase.flood.as_ref()];
        for (code, message) in outcomes.into_iter().flatten().flat_map(|o| &o.messages) {
            println!("- {}: {code}: \"{message}\"", phase.name);
        }
    }
}

fn settings(args: &Args) -> Settings {
    let mut settings = Settings::for_database(args.database_url.clone());
    settings.notifier.enabled = false;
    let server = &mut settings.server;
    if args.limits == Limits::Off {
        server.max_in_flight = 0;
        server.max_calls_per_connection = 0;
        server.max_calls_per_caller = 0;
        server.unauthenticated_delay = Duration::ZERO;
        server.max_concurrent_streams = u32::MAX;
        server.request_timeout = Duration::from_secs(3600);
    }
    if let Some(max) = args.max_in_flight {
        server.max_in_flight = max;
    }
    if let Some(max) = args.max_calls_per_connection {
        server.max_calls_per_connection = max;
    }
    if let Some(max) = args.max_calls_per_caller {
        server.max_calls_per_caller = max;
    }
    settings
}

fn main() {
    let args = Args::parse();
    let server_runtime = Runtime::new().expect("the server's runtime");
    let (fixture, shutdown, server) = server_runtime.block_on(async {
        if args.database_url.starts_with("postgres") {
            support::ensure_postgres_database(&args.database_url).await;
        }
        let settings = settings(&args);
        eprintln!("server limits: {:?}", settings.server);
        let app = Application::build(&settings)
            .await
            .expect("the application builds (connects and migrates)");
        let addr = app.local_addr();
        let run = Uuid::new_v4().simple().to_string();
        let email = Email::parse(&format!("admin-{run}@flood.bench.example")).expect("email");
        let account = app
            .users()
            .create_account(&NewAccount {
                name: DisplayName::parse("Flood bench").expect("name"),
                admin_email: email.clone(),
                admin_name: DisplayName::parse("Flood Admin").expect("name"),
            })
            .await
            .expect("bootstrap an account");
        let flood_token = app
            .users()
            .issue_token_for(
                account.account_id,
                &email,
                None,
                DisplayName::parse("flood").expect("name"),
            )
            .await
            .expect("a token for the flood");
        let fixture = Fixture {
            addr,
            account_id: account.account_id,
            user_id: account.user_id,
            probe_token: account.api_token.expose().to_string(),
            flood_token: flood_token.secret.expose().to_string(),
            unknown_token: ApiTokenSecret::generate().expose().to_string(),
        };
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until_stopped(async {
                stopped.await.ok();
            })
            .await
            .expect("the server runs");
        });
        (fixture, shutdown, server)
    });
    let bench = Bench {
        fixture,
        probe_runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the probe's runtime"),
        flood_runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("flood")
            .enable_all()
            .build()
            .expect("the flood's runtime"),
        args,
    };
    println!(
        "flood_bench: {} limits, {}, flood {} × {}, phases of {:?} after {:?}; {}",
        match bench.args.limits {
            Limits::On => "default",
            Limits::Off => "no",
        },
        bench.args.database_url.split(':').next().unwrap_or("?"),
        bench.args.flood_connections,
        bench.args.flood_streams,
        bench.args.phase,
        bench.args.settle,
        machine_state()
    );

    // Warm the connection pools and the statement caches.
    bench
        .probe_runtime
        .block_on(probe(bench.fixture.clone(), Duration::from_secs(1)));
    let mut phases = vec![bench.quiet()];
    let unknown = bench.fixture.unknown_token.clone();
    phases.push(bench.tonic_flood("flood, unknown token", &unknown));
    let valid = bench.fixture.flood_token.clone();
    phases.push(bench.tonic_flood("flood, valid token", &valid));
    if bench.args.h2load != "none" {
        let health = grpc_frame(&tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        });
        phases.push(bench.h2load_flood(
            "h2load, Health/Check",
            "/grpc.health.v1.Health/Check",
            &health,
            None,
        ));
        let get_user = grpc_frame(&bench.fixture.message());
        phases.push(bench.h2load_flood(
            "h2load, GetUser, unknown token",
            "/usermgmt.v1.UserManagement/GetUser",
            &get_user,
            Some(&unknown),
        ));
    }
    print_report(&phases);

    shutdown.send(()).ok();
    server_runtime
        .block_on(server)
        .expect("the server stops cleanly");
}
