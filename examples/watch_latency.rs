//! WatchChanges: the delay from a change's commit to its ChangeEvent reaching a watcher.
//!
//! Starts two instances of the real server in-process on one database (two replicas), opens
//! a WatchChanges stream on the first and makes changes through the second: an
//! administrator renaming themself with UpdateUser, each call with its own `x-request-id`,
//! which its event carries. For each change it notes when the call returned (the commit
//! happened before) and when the watcher received the event, and prints percentiles of the
//! difference: the time from the commit's acknowledgement to the event's arrival.
//!
//! Two runs: `paced`, one change at a time, the next once the watcher has the previous one
//! (the delay of an idle system), and `burst`, `--writers` clients changing at once.
//!
//! ```text
//! cargo run --release --example watch_latency -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/usermgmt_watch_bench
//! ```
//!
//! A PostgreSQL database that does not exist is created. Tables go to stdout, progress to
//! stderr.

#[path = "support/mod.rs"]
mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use clap::Parser;
use tokio::sync::oneshot;
use tonic::{Request, transport::Channel};
use uuid::Uuid;

use usermgmt::{
    app::Application,
    config::Settings,
    domain::{DisplayName, Email},
    grpc::pb::{self, user_management_client::UserManagementClient},
    service::NewAccount,
};

#[derive(Debug, Parser)]
#[command(about = "Times a change's commit to its ChangeEvent reaching a watcher")]
struct Args {
    /// `postgres://…/<database>` (created when missing) or `sqlite://<file>?mode=rwc`.
    #[arg(long)]
    database_url: String,
    /// Changes timed per run.
    #[arg(long, default_value_t = 1000)]
    changes: usize,
    /// Clients changing at once in the burst run.
    #[arg(long, default_value_t = 4)]
    writers: usize,
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn start(settings: &Settings) -> (UserManagementClient<Channel>, Application) {
    let app = Application::build(settings)
        .await
        .expect("the application builds (connects and migrates)");
    let client = UserManagementClient::connect(format!("http://{}", app.local_addr()))
        .await
        .expect("connect");
    (client, app)
}

fn serve(app: Application, stopped: oneshot::Receiver<()>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        app.run_until_stopped(async {
            stopped.await.ok();
        })
        .await
        .expect("the server runs");
    })
}

fn authorized<T>(token: &str, request_id: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("authorization", format!("APIKey {token}").parse().unwrap());
    metadata.insert("x-request-id", request_id.parse().unwrap());
    request
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(run: &str, returned: &HashMap<String, Instant>, arrivals: &Arrivals) {
    let arrivals = arrivals.lock().unwrap_or_else(PoisonError::into_inner);
    let mut delays: Vec<f64> = returned
        .iter()
        .map(|(id, returned)| {
            let arrived = arrivals.get(id).expect("every change arrived");
            // An event may arrive before its call's answer: a negative delay.
            match arrived.checked_duration_since(*returned) {
                Some(after) => after.as_secs_f64() * 1000.0,
                None => -(returned.duration_since(*arrived).as_secs_f64() * 1000.0),
            }
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let early = delays.iter().filter(|d| **d <= 0.0).count();
    println!(
        "| {run} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {early} |",
        delays.len(),
        percentile(&delays, 50.0),
        percentile(&delays, 90.0),
        percentile(&delays, 99.0),
        delays.last().copied().unwrap_or_default(),
        delays.iter().sum::<f64>() / delays.len() as f64,
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(args.changes > 0 && args.writers > 0);
    if args.database_url.starts_with("postgres") {
        support::ensure_postgres_database(&args.database_url).await;
    }
    let settings = Settings::for_database(args.database_url.clone());
    let (watcher_client, watching_app) = start(&settings).await;
    let (writer_client, writing_app) = start(&settings).await;
    let run = Uuid::new_v4().simple().to_string();
    let email = Email::parse(&format!("admin-{run}@watch.bench.example")).expect("email");
    let account = writing_app
        .users()
        .create_account(&NewAccount {
            name: DisplayName::parse("Watch bench").expect("name"),
            admin_email: email,
            admin_name: DisplayName::parse("Watch Admin").expect("name"),
        })
        .await
        .expect("bootstrap an account");
    let (token, account_id, admin_id) = (
        account.api_token.expose().to_string(),
        account.account_id.to_string(),
        account.user_id.to_string(),
    );
    let (stop_a, stopped_a) = oneshot::channel();
    let (stop_b, stopped_b) = oneshot::channel();
    let servers = [
        serve(watching_app, stopped_a),
        serve(writing_app, stopped_b),
    ];

    // The watcher notes when each event arrives, and wakes whoever waits for it.
    let arrivals: Arrivals = Arc::default();
    let (arrived, mut arrived_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut stream = watcher_client
        .clone()
        .watch_changes(authorized(
            &token,
            "watcher",
            pb::WatchChangesRequest {
                account_id: account_id.clone(),
                start_after: String::new(),
            },
        ))
        .await
        .expect("the stream opens")
        .into_inner();
    let watcher = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                let now = Instant::now();
                if let Some(event) = message.event {
                    arrivals
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(event.request_id.clone(), now);
                    arrived.send(event.request_id).ok();
                }
            }
        })
    };

    let change = move |client: UserManagementClient<Channel>, request_id: String, n: usize| {
        let (token, account_id, admin_id) = (token.clone(), account_id.clone(), admin_id.clone());
        async move {
            let request = pb::UpdateUserRequest {
                account_id,
                user_id: admin_id,
                name: Some(format!("Watch Admin {request_id} {n}")),
                ..Default::default()
            };
            client
                .clone()
                .update_user(authorized(&token, &request_id, request))
                .await
                .expect("the change");
            (request_id, Instant::now())
        }
    };

    println!(
        "| run | changes | p50 ms | p90 ms | p99 ms | max ms | mean ms | arrived before the answer |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    // Paced: the next change once the watcher has the previous one.
    let mut returned = HashMap::new();
    for n in 0..args.changes {
        let (id, at) = change(writer_client.clone(), format!("paced-{n}"), n).await;
        while arrived_rx.recv().await.expect("the watcher runs") != id {}
        returned.insert(id, at);
    }
    report("paced", &returned, &arrivals);

    // Burst: `writers` clients at once.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let change = change.clone();
        let client = writer_client.clone();
        let count = args.changes / args.writers;
        tasks.push(tokio::spawn(async move {
            let mut returned = Vec::new();
            for n in 0..count {
                returned.push(change(client.clone(), format!("burst-{w}-{n}"), n).await);
            }
            returned
        }));
    }
    let mut returned = HashMap::new();
    for task in tasks {
        returned.extend(task.await.expect("a writer"));
    }
    let elapsed = started.elapsed();
    while arrivals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .filter(|id| id.starts_with("burst-"))
        .count()
        < returned.len()
    {
        arrived_rx.recv().await.expect("the watcher runs");
    }
    report("burst", &returned, &arrivals);
    eprintln!(
        "burst: {} changes in {:.2?} ({:.0}/s)",
        returned.len(),
        elapsed,
        returned.len() as f64 / elapsed.as_secs_f64()
    );

    watcher.abort();
    stop_a.send(()).ok();
    stop_b.send(()).ok();
    for server in servers {
        tokio::time::timeout(Duration::from_secs(60), server)
            .await
            .ok();
    }
}
