//! ListUsers latency on one account with many members.
//!
//! Starts the real server in-process (as `tests/api/helpers/` does), bootstraps an
//! account, bulk-inserts `--members` members straight into the database, then times
//! sequential ListUsers calls through the generated tonic client, and the store queries
//! behind them, and prints the query plans of those queries.
//!
//! ```text
//! cargo run --release --example list_users_bench -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/usermgmt_bench --members 100000
//! cargo run --release --example list_users_bench -- \
//!     --database-url 'sqlite:///tmp/usermgmt_bench.db?mode=rwc' --members 100000
//! ```
//!
//! A PostgreSQL database that does not exist is created. An account seeded by an earlier
//! run with the same `--members` is reused; a half-seeded one is deleted and seeded again.
//! The tables go to stdout, progress to stderr.

#[path = "support/mod.rs"]
mod support;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use clap::Parser;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DbBackend, EntityTrait, PaginatorTrait, QueryFilter, Statement, TransactionTrait,
};
use tokio::sync::oneshot;
use tonic::{Request, transport::Channel};
use uuid::Uuid;

use usermgmt::{
    app::Application,
    config::Settings,
    domain::{ApiTokenSecret, CloudAccess, DisplayName, Email, Language, MemberStatus, Role},
    grpc::pb::{self, user_management_client::UserManagementClient},
    store::{
        MemberFilter, Store,
        entity::{account, api_token, membership, user},
    },
};

#[derive(Debug, Parser)]
#[command(about = "Times ListUsers on an account with many members")]
struct Args {
    /// `postgres://…/<database>` (created when missing) or `sqlite://<file>?mode=rwc`.
    #[arg(long)]
    database_url: String,
    /// Members of the benchmark account, besides its administrator.
    #[arg(long, default_value_t = 100_000)]
    members: u32,
    /// Timed calls per scenario.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Untimed calls before each scenario.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Timed store-level (SQL) calls per scenario and query.
    #[arg(long, default_value_t = 50)]
    sql_iterations: usize,
    /// The deep page, reached by following next_page_token with page_size 50.
    #[arg(long, default_value_t = 1800)]
    deep_page: usize,
    /// Rows per multi-row INSERT while seeding.
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// Members of a second account, seeded before the benchmark account, so that the
    /// memberships table holds more than the account being listed.
    #[arg(long, default_value_t = 0)]
    other_members: u32,
}

const PAGE_SIZE: i32 = 50;
const SEARCH_HIT: &str = "user9999";
const SEARCH_MISS: &str = "nobody-matches-this";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(args.iterations > 0, "--iterations must be positive");
    assert!(args.batch > 0, "--batch must be positive");
    let backend = if args.database_url.starts_with("postgres") {
        support::ensure_postgres_database(&args.database_url).await;
        DbBackend::Postgres
    } else {
        DbBackend::Sqlite
    };

    let app = Application::build(&Settings::for_database(args.database_url.clone()))
        .await
        .expect("the application builds (connects and migrates)");
    let addr = app.local_addr();
    let db = app.db().clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            stopped.await.ok();
        })
        .await
        .expect("the server runs");
    });

    if args.other_members > 0 {
        let other = format!(
            "ListUsers bench, other account: {} members",
            args.other_members
        );
        let domain = format!("o{}.bench.example", args.other_members);
        prepare_account(
            &db,
            backend,
            &other,
            &domain,
            args.other_members,
            args.batch,
        )
        .await;
    }
    let seeded = prepare_account(
        &db,
        backend,
        &format!("ListUsers bench: {} members", args.members),
        &format!("n{}.bench.example", args.members),
        args.members,
        args.batch,
    )
    .await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect to the server");
    let client = Client {
        users: UserManagementClient::new(channel),
        token: seeded.token.clone(),
        account_id: seeded.account_id,
    };

    println!("{}", environment(&db, backend, &args, &seeded).await);

    let deep = walk_to_deep_page(&client, &db, seeded.account_id, args.deep_page).await;
    let scenarios = scenarios(&client, &deep);

    let mut rows = Vec::new();
    for scenario in &scenarios {
        eprintln!("timing {}", scenario.name);
        rows.push(time_grpc(&client, scenario, args.warmup, args.iterations).await);
    }
    println!(
        "\n### gRPC ListUsers, {} sequential calls each\n",
        args.iterations
    );
    println!("{}", grpc_table(&scenarios, &rows, &deep.walk));

    println!(
        "\n### Store queries alone (median of {} calls each)\n",
        args.sql_iterations
    );
    println!(
        "| Scenario | list query ms | count query (total_size) ms | gRPC call ms |\n|---|---:|---:|---:|"
    );
    for (scenario, grpc) in scenarios.iter().zip(&rows) {
        let (list, count) = time_store(&db, seeded.account_id, scenario, args.sql_iterations).await;
        println!(
            "| {} | {} | {} | {} |",
            scenario.name,
            ms(list),
            ms(count),
            ms(grpc.stats.median)
        );
    }

    println!("\n### Query plans\n");
    let plans = [&scenarios[0], &scenarios[1], &scenarios[2], &scenarios[3]];
    for scenario in plans {
        explain(&db, backend, seeded.account_id, scenario).await;
    }

    drop(client);
    shutdown.send(()).ok();
    server.await.expect("the server stops cleanly");
}

struct Seeded {
    account_id: Uuid,
    token: String,
    seconds_to_seed: Option<f64>,
}

/// The account named `account_name` with `members` members whose emails end in `@domain`,
/// and a fresh administrator token.
async fn prepare_account(
    db: &DatabaseConnection,
    backend: DbBackend,
    account_name: &str,
    domain: &str,
    members: u32,
    batch: u32,
) -> Seeded {
    let admin_email = Email::parse(&format!("admin@{domain}")).expect("a valid email");
    let now = now_micros();

    let existing = account::Entity::find()
        .filter(account::Column::Name.eq(account_name))
        .one(db)
        .await
        .expect("look the account up");
    if let Some(existing) = existing {
        let count = membership::Entity::find()
            .filter(membership::Column::AccountId.eq(existing.id))
            .count(db)
            .await
            .expect("count the members");
        if count == u64::from(members) + 1 {
            eprintln!("reusing account {} ({count} members)", existing.id);
            let admin = user::Entity::find()
                .filter(user::Column::Email.eq(admin_email.as_str()))
                .one(db)
                .await
                .expect("look the administrator up")
                .expect("the reused account has its administrator");
            analyze(db, backend).await;
            return Seeded {
                account_id: existing.id,
                token: issue_token(db, existing.id, admin.id, now).await,
                seconds_to_seed: None,
            };
        }
        eprintln!(
            "deleting half-seeded account {} ({count} members)",
            existing.id
        );
        account::Entity::delete_by_id(existing.id)
            .exec(db)
            .await
            .expect("delete the account");
        user::Entity::delete_many()
            .filter(user::Column::Email.ends_with(format!("@{domain}")))
            .exec(db)
            .await
            .expect("delete its users");
    }

    let created = Store::new(db.clone())
        .create_account(
            &DisplayName::parse(account_name).expect("a valid account name"),
            &admin_email,
            &DisplayName::parse("Bench Admin").expect("a valid name"),
            now,
        )
        .await
        .expect("bootstrap the account");
    let started = Instant::now();
    seed_members(
        db,
        created.account_id,
        created.user_id,
        domain,
        members,
        batch,
        now,
    )
    .await;
    analyze(db, backend).await;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("seeded {members} members in {seconds:.1} s");
    Seeded {
        account_id: created.account_id,
        token: created.api_token.expose().to_string(),
        seconds_to_seed: Some(seconds),
    }
}

/// Inserts members 1..=`members` in multi-row INSERTs of `batch` rows, one transaction per
/// batch. Membership ids are UUIDv7 made in order, so member `i` is at list position `i + 1`
/// (the administrator is first). Every 20th member is invited; every other one of those has
/// an expired link. Every 4th has two-factor authentication.
async fn seed_members(
    db: &DatabaseConnection,
    account_id: Uuid,
    admin_id: Uuid,
    domain: &str,
    members: u32,
    batch: u32,
    now: DateTime<Utc>,
) {
    let mut first = 1;
    while first <= members {
        let last = members.min(first + batch - 1);
        let mut users = Vec::with_capacity(batch as usize);
        let mut memberships = Vec::with_capacity(batch as usize);
        for i in first..=last {
            let invited = i % 20 == 0;
            let role = match i {
                i if i % 50 == 0 => Role::Administrators,
                i if i % 10 == 0 => Role::Engineers,
                _ => Role::Users,
            };
            let name = format!("Bench User {i}");
            let user_id = Uuid::now_v7();
            users.push(user::ActiveModel {
                id: Set(user_id),
                email: Set(format!("user{i}@{domain}")),
                name_lower: Set(name.to_lowercase()),
                name: Set(name.clone()),
                language: Set(Language::En.code().to_string()),
                password_hash: Set(None),
                activated: Set(!invited),
                two_factor_enabled: Set(i % 4 == 0),
                created_at: Set(now),
            });
            let expires_at = if i % 40 == 0 {
                now - TimeDelta::days(1)
            } else {
                now + TimeDelta::days(7)
            };
            memberships.push(membership::ActiveModel {
                id: Set(Uuid::now_v7()),
                account_id: Set(account_id),
                user_id: Set(user_id),
                role: Set(role.id()),
                cloud_access: Set(serde_json::to_string(&CloudAccess::default_for(role))
                    .expect("cloud access serialises")),
                status: Set(if invited { "invited" } else { "active" }.to_string()),
                invited_by: Set(Some(admin_id)),
                invited_at: Set(now - TimeDelta::days(2)),
                invitation_expires_at: Set(invited.then_some(expires_at)),
                accepted_at: Set((!invited).then_some(now)),
                invited_name_lower: Set(name.to_lowercase()),
                invited_name: Set(name),
                invited_language: Set(Language::En.code().to_string()),
                created_at: Set(now - TimeDelta::days(2)),
            });
        }
        let tx = db.begin().await.expect("begin a seeding transaction");
        user::Entity::insert_many(users)
            .exec_without_returning(&tx)
            .await
            .expect("insert users");
        membership::Entity::insert_many(memberships)
            .exec_without_returning(&tx)
            .await
            .expect("insert memberships");
        tx.commit().await.expect("commit a seeding batch");
        if (last / batch).is_multiple_of(10) || last == members {
            eprintln!("seeded {last}/{members}");
        }
        first = last + 1;
    }
}

/// Fresh planner statistics; on PostgreSQL also a vacuumed visibility map, as autovacuum
/// would leave a table that is not being bulk-loaded.
async fn analyze(db: &DatabaseConnection, backend: DbBackend) {
    let statement = match backend {
        DbBackend::Postgres => "VACUUM (ANALYZE) users, memberships, api_tokens",
        _ => "ANALYZE",
    };
    db.execute_unprepared(statement)
        .await
        .expect("analyze the tables");
}

async fn issue_token(
    db: &DatabaseConnection,
    account_id: Uuid,
    issuer_id: Uuid,
    now: DateTime<Utc>,
) -> String {
    let secret = ApiTokenSecret::generate();
    api_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(account_id),
        issuer_id: Set(issuer_id),
        name: Set("list_users_bench".into()),
        description: Set(String::new()),
        role: Set(Role::Administrators.id()),
        secret_hash: Set(secret.hash().into_string()),
        expires_at: Set(None),
        created_at: Set(now),
        last_used_at: Set(None),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
    .expect("issue an API token");
    secret.expose().to_string()
}

/// The 1, 5 and 15 minute load averages, where Linux tells them.
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

async fn environment(
    db: &DatabaseConnection,
    backend: DbBackend,
    args: &Args,
    seeded: &Seeded,
) -> String {
    let version_sql = match backend {
        DbBackend::Postgres => "SELECT version() AS v",
        _ => "SELECT 'SQLite ' || sqlite_version() AS v",
    };
    let version: String = db
        .query_one_raw(Statement::from_string(backend, version_sql))
        .await
        .expect("read the server version")
        .expect("a version row")
        .try_get("", "v")
        .expect("a version string");
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = load_average();
    let seeding = match seeded.seconds_to_seed {
        Some(seconds) => format!("seeded in {seconds:.1} s (inserts + analyze)"),
        None => "reused from an earlier run".to_string(),
    };
    format!(
        "## ListUsers benchmark\n\n- database: {version}\n- members: {} + the administrator ({seeding}); other accounts' members in the table: {}\n- CPUs available: {cpus}; client, server and database share them; load average before the timings: {load}\n- warm-up {} calls, then {} timed sequential calls per scenario",
        args.members, args.other_members, args.warmup, args.iterations
    )
}

struct Client {
    users: UserManagementClient<Channel>,
    token: String,
    account_id: Uuid,
}

impl Client {
    fn request(&self) -> pb::ListUsersRequest {
        pb::ListUsersRequest {
            account_id: self.account_id.to_string(),
            page_size: PAGE_SIZE,
            ..Default::default()
        }
    }

    async fn list(&self, message: pb::ListUsersRequest) -> pb::ListUsersResponse {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("APIKey {}", self.token)
                .parse()
                .expect("ASCII metadata"),
        );
        self.users
            .clone()
            .list_users(request)
            .await
            .expect("ListUsers succeeds")
            .into_inner()
    }
}

/// The token of the deep page, found the way a client finds it, and the walk's latencies.
struct DeepPage {
    page: usize,
    token: String,
    /// The membership id the deep page starts after, for the store-level queries.
    after: Uuid,
    walk: Vec<Duration>,
}

async fn walk_to_deep_page(
    client: &Client,
    db: &DatabaseConnection,
    account_id: Uuid,
    page: usize,
) -> DeepPage {
    assert!(page >= 2, "--deep-page must be at least 2");
    eprintln!("walking next_page_token to page {page}");
    let mut token = String::new();
    let mut last_user = String::new();
    let mut walk = Vec::with_capacity(page);
    for _ in 1..page {
        let request = pb::ListUsersRequest {
            page_token: token,
            ..client.request()
        };
        let started = Instant::now();
        let response = client.list(request).await;
        walk.push(started.elapsed());
        token = response.next_page_token;
        assert!(
            !token.is_empty(),
            "the account has fewer than {page} pages of {PAGE_SIZE}"
        );
        last_user = response.users.last().expect("a full page").id.clone();
    }
    let last_user = Uuid::try_parse(&last_user).expect("a user id");
    let last_membership = membership::Entity::find()
        .filter(membership::Column::AccountId.eq(account_id))
        .filter(membership::Column::UserId.eq(last_user))
        .one(db)
        .await
        .expect("look the membership up")
        .expect("the member exists");
    DeepPage {
        page,
        token,
        after: last_membership.id,
        walk,
    }
}

struct Scenario {
    name: String,
    request: pb::ListUsersRequest,
    /// The same query at the store level.
    filter: MemberFilter,
    after: Option<Uuid>,
    page_size: u64,
}

fn scenarios(client: &Client, deep: &DeepPage) -> Vec<Scenario> {
    let search = |text: &str| MemberFilter {
        search: Some((text.to_lowercase(), None)),
        ..Default::default()
    };
    let first_row = (deep.page - 1) * PAGE_SIZE as usize + 1;
    vec![
        Scenario {
            name: "(a) first page, page_size 50".into(),
            request: client.request(),
            filter: MemberFilter::default(),
            after: None,
            page_size: 50,
        },
        Scenario {
            name: format!(
                "(b) page {} (rows {first_row}–{}), page_size 50",
                deep.page,
                first_row + PAGE_SIZE as usize - 1
            ),
            request: pb::ListUsersRequest {
                page_token: deep.token.clone(),
                ..client.request()
            },
            filter: MemberFilter::default(),
            after: Some(deep.after),
            page_size: 50,
        },
        Scenario {
            name: format!("(c) search \"{SEARCH_HIT}\", first page"),
            request: pb::ListUsersRequest {
                search: SEARCH_HIT.into(),
                ..client.request()
            },
            filter: search(SEARCH_HIT),
            after: None,
            page_size: 50,
        },
        Scenario {
            name: "(d) status INVITED, first page".into(),
            request: pb::ListUsersRequest {
                status: Some(pb::UserStatus::Invited as i32),
                ..client.request()
            },
            filter: MemberFilter {
                status: Some(MemberStatus::Invited),
                ..Default::default()
            },
            after: None,
            page_size: 50,
        },
        Scenario {
            name: "(e) first page, page_size 1000".into(),
            request: pb::ListUsersRequest {
                page_size: 1000,
                ..client.request()
            },
            filter: MemberFilter::default(),
            after: None,
            page_size: 1000,
        },
        Scenario {
            name: "(f) search without a match".into(),
            request: pb::ListUsersRequest {
                search: SEARCH_MISS.into(),
                ..client.request()
            },
            filter: search(SEARCH_MISS),
            after: None,
            page_size: 50,
        },
    ]
}

struct GrpcRow {
    stats: Stats,
    returned: usize,
    total_size: i32,
}

async fn time_grpc(
    client: &Client,
    scenario: &Scenario,
    warmup: usize,
    iterations: usize,
) -> GrpcRow {
    for _ in 0..warmup {
        client.list(scenario.request.clone()).await;
    }
    let mut samples = Vec::with_capacity(iterations);
    let mut last = None;
    for _ in 0..iterations {
        let started = Instant::now();
        let response = client.list(scenario.request.clone()).await;
        samples.push(started.elapsed());
        last = Some(response);
    }
    let last = last.expect("at least one call");
    GrpcRow {
        stats: Stats::of(samples),
        returned: last.users.len(),
        total_size: last.total_size,
    }
}

fn grpc_table(scenarios: &[Scenario], rows: &[GrpcRow], walk: &[Duration]) -> String {
    let mut table = String::from(
        "| Scenario | users returned | total_size | median ms | p95 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (scenario, row) in scenarios.iter().zip(rows) {
        let s = &row.stats;
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            scenario.name,
            row.returned,
            row.total_size,
            ms(s.median),
            ms(s.p95),
            ms(s.p99),
            ms(s.max)
        ));
    }
    let s = Stats::of(walk.to_vec());
    let total: Duration = walk.iter().sum();
    table.push_str(&format!(
        "| walk: pages 1–{} once each (total {:.1} s) | 50 | | {} | {} | {} | {} |",
        walk.len(),
        total.as_secs_f64(),
        ms(s.median),
        ms(s.p95),
        ms(s.p99),
        ms(s.max)
    ));
    table
}

/// Median durations of the scenario's list query and count query, called through the
/// store functions the service calls.
async fn time_store(
    db: &DatabaseConnection,
    account_id: Uuid,
    scenario: &Scenario,
    iterations: usize,
) -> (Duration, Duration) {
    let now = now_micros();
    let mut list = Vec::with_capacity(iterations);
    let mut count = Vec::with_capacity(iterations);
    for i in 0..iterations + 3 {
        let (listed, counted) = list_and_count(db, account_id, scenario, now).await;
        // The first calls warm the statement cache.
        if i >= 3 {
            list.push(listed);
            count.push(counted);
        }
    }
    (Stats::of(list).median, Stats::of(count).median)
}

/// Runs the two store functions behind a ListUsers call; returns how long each took.
async fn list_and_count(
    db: &DatabaseConnection,
    account_id: Uuid,
    scenario: &Scenario,
    now: DateTime<Utc>,
) -> (Duration, Duration) {
    let store = Store::new(db.clone());
    let started = Instant::now();
    store
        .list_members(
            account_id,
            &scenario.filter,
            scenario.after,
            scenario.page_size + 1,
            now,
        )
        .await
        .expect("the list query runs");
    let listed = started.elapsed();
    let started = Instant::now();
    store
        .count_members(account_id, &scenario.filter, now)
        .await
        .expect("the count query runs");
    (listed, started.elapsed())
}

/// Prints the SQL the store functions send for the scenario and its plan: `EXPLAIN
/// (ANALYZE, BUFFERS)` on PostgreSQL, `EXPLAIN QUERY PLAN` on SQLite.
async fn explain(
    db: &DatabaseConnection,
    backend: DbBackend,
    account_id: Uuid,
    scenario: &Scenario,
) {
    let captured: Arc<Mutex<Vec<Statement>>> = Arc::default();
    let mut probe = db.clone();
    let sink = captured.clone();
    probe.set_metric_callback(move |info| {
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(info.statement.clone());
    });
    list_and_count(&probe, account_id, scenario, now_micros()).await;
    let statements = captured
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();

    println!("#### {}\n", scenario.name);
    for (label, statement) in ["list", "count"].iter().zip(&statements) {
        let values = statement.values.clone().map(|v| v.0).unwrap_or_default();
        let (prefix, column) = match backend {
            DbBackend::Postgres => ("EXPLAIN (ANALYZE, BUFFERS)", "QUERY PLAN"),
            _ => ("EXPLAIN QUERY PLAN", "detail"),
        };
        let plan: Vec<String> = db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!("{prefix} {}", statement.sql),
                values,
            ))
            .await
            .expect("explain the query")
            .iter()
            .map(|row| row.try_get::<String>("", column).expect("a plan line"))
            .collect();
        println!(
            "{label} query — uses ix_memberships_account_id: {}; access paths: {}\n",
            yes_no(
                plan.iter()
                    .any(|line| line.contains("ix_memberships_account_id"))
            ),
            access_paths(&plan)
        );
        let plan = plan.join("\n");
        println!("```sql\n{statement}\n```\n\n```text\n{plan}\n```\n");
    }
}

/// The scans of a plan, without costs: `Index Scan using memberships_pkey on memberships; …`.
fn access_paths(plan: &[String]) -> String {
    plan.iter()
        .map(|line| line.trim().trim_start_matches("->").trim())
        .filter(|line| {
            line.contains("Scan") || line.starts_with("SCAN") || line.starts_with("SEARCH")
        })
        .map(|line| line.split("  (").next().unwrap_or(line))
        .collect::<Vec<_>>()
        .join("; ")
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

struct Stats {
    median: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    /// Nearest-rank percentiles.
    fn of(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = (p / 100.0 * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Stats {
            median: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: samples[samples.len() - 1],
        }
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}
