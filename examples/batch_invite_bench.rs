//! Invitations per second: BatchInviteUsers (rows of 100) against InviteUser, one call at a
//! time and `--concurrency` calls at once, on the same server and database in one run.
//!
//! Starts the real server in-process on 127.0.0.1:0 with the notifier and the invitation
//! quota off, bootstraps an account, then invites `--invitations` new people in each phase
//! (fresh emails every phase, so every row creates a user, a membership, an invitation, an
//! outbox email and an audit event).
//!
//! ```text
//! cargo run --release --example batch_invite_bench -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/usermgmt_batch_bench
//! cargo run --release --example batch_invite_bench -- \
//!     --database-url 'sqlite:///tmp/usermgmt_batch_bench.db?mode=rwc'
//! ```
//!
//! A PostgreSQL database that does not exist is created. The table goes to stdout.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, stream};
use tokio::sync::oneshot;
use tonic::{Request, transport::Channel};
use uuid::Uuid;

use usermgmt::{
    app::Application,
    config::{QuotaSetting, Settings},
    domain::{DisplayName, Email},
    grpc::pb::{self, user_management_client::UserManagementClient},
    service::NewAccount,
};

#[derive(Debug, Parser)]
#[command(about = "Times BatchInviteUsers against InviteUser")]
struct Args {
    /// `postgres://…/<database>` (created when missing) or `sqlite://<file>?mode=rwc`.
    #[arg(long)]
    database_url: String,
    /// Invitations per phase.
    #[arg(long, default_value_t = 2000)]
    invitations: usize,
    /// Calls at once in the concurrent phases.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

struct Client {
    users: UserManagementClient<Channel>,
    account_id: String,
    authorization: String,
}

impl Client {
    fn row(&self, phase: &str, n: usize) -> pb::InviteUserRequest {
        pb::InviteUserRequest {
            account_id: self.account_id.clone(),
            name: format!("Bench {n}"),
            email: format!(
                "{phase}-{n}-{}@batch.bench.example",
                Uuid::now_v7().simple()
            ),
            language: pb::Language::En as i32,
            role: pb::Role::Users as i32,
            ..Default::default()
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            self.authorization.parse().expect("a metadata value"),
        );
        request
    }

    async fn invite(&self, phase: &str, n: usize) {
        self.users
            .clone()
            .invite_user(self.request(self.row(phase, n)))
            .await
            .expect("an invitation");
    }

    async fn batch(&self, phase: &str, from: usize, rows: usize) {
        let requests = (from..from + rows).map(|n| self.row(phase, n)).collect();
        let results = self
            .users
            .clone()
            .batch_invite_users(self.request(pb::BatchInviteUsersRequest {
                account_id: self.account_id.clone(),
                requests,
            }))
            .await
            .expect("a batch")
            .into_inner()
            .results;
        let failed = results
            .iter()
            .filter(|row| !matches!(row.result, Some(pb::batch_invite_result::Result::User(_))))
            .count();
        assert_eq!(failed, 0, "every row of the batch invites");
    }
}

/// Runs `calls` calls of `phase`, `at_once` at a time; returns the wall time.
async fn timed<F, Fut>(calls: usize, at_once: usize, call: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    stream::iter(0..calls)
        .map(call)
        .buffer_unordered(at_once)
        .collect::<Vec<()>>()
        .await;
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.database_url.starts_with("postgres") {
        support::ensure_postgres_database(&args.database_url).await;
    }
    let mut settings = Settings::for_database(args.database_url.clone());
    settings.notifier.enabled = false;
    settings.invitations.quota = QuotaSetting(None);
    // One credential makes every call here: let it use the whole server.
    settings.server.max_calls_per_caller = 0;
    let app = Application::build(&settings)
        .await
        .expect("the application builds (connects and migrates)");
    let addr = app.local_addr();
    let run = Uuid::now_v7().simple().to_string();
    let account = app
        .users()
        .create_account(&NewAccount {
            name: DisplayName::parse("Batch bench").expect("name"),
            admin_email: Email::parse(&format!("admin-{run}@batch.bench.example")).expect("email"),
            admin_name: DisplayName::parse("Batch Admin").expect("name"),
        })
        .await
        .expect("bootstrap an account");
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            stopped.await.ok();
        })
        .await
        .expect("the server runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("an address")
        .connect()
        .await
        .expect("connect");
    let client = Client {
        users: UserManagementClient::new(channel),
        account_id: account.account_id.to_string(),
        authorization: format!("APIKey {}", account.api_token.expose()),
    };
    let n = args.invitations;
    let batches = n.div_ceil(100);
    let c = args.concurrency;
    let client = &client;
    // Warm up the pool and the statement caches.
    timed(50, c, |i| client.invite("warm", i)).await;

    let phases = [
        (
            "InviteUser, one call at a time".to_string(),
            timed(n, 1, |i| client.invite("single", i)).await,
        ),
        (
            format!("InviteUser, {c} calls at once"),
            timed(n, c, |i| client.invite("parallel", i)).await,
        ),
        (
            "BatchInviteUsers of 100, one call at a time".to_string(),
            timed(batches, 1, |b| client.batch("batch", b * 100, 100)).await,
        ),
        (
            "BatchInviteUsers of 100, 2 calls at once".to_string(),
            timed(batches, 2, |b| client.batch("batch2", b * 100, 100)).await,
        ),
    ];
    let engine = if args.database_url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("batch_invite_bench: {engine}, {n} invitations per phase\n");
    println!("| phase | wall time | invitations/s | vs InviteUser one at a time |");
    println!("|---|---:|---:|---:|");
    let base = n as f64 / phases[0].1.as_secs_f64();
    for (name, took) in &phases {
        let rate = n as f64 / took.as_secs_f64();
        println!(
            "| {name} | {:.2} s | {rate:.0} | {:.2}× |",
            took.as_secs_f64(),
            rate / base
        );
    }
    shutdown.send(()).ok();
    server.await.expect("the server stops");
}
