//! ListUsers scenarios, timed through the generated client, each beside its floor: the
//! keyset page query the store sends for it, run alone on the database.

use std::{
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tonic::{Request, transport::Channel};
use uuid::Uuid;

use usermgmt::{
    domain::{MemberStatus, Role},
    grpc::pb::{self, user_management_client::UserManagementClient},
    store::{MemberFilter, Store},
};

use crate::{
    pgbench,
    stats::{Figure, Stats},
};

pub struct Client {
    pub users: UserManagementClient<Channel>,
    pub token: String,
    pub account_id: Uuid,
}

impl Client {
    fn request(&self, page_size: i32) -> pb::ListUsersRequest {
        pb::ListUsersRequest {
            account_id: self.account_id.to_string(),
            page_size,
            ..Default::default()
        }
    }

    pub fn authorized<T>(token: &str, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("APIKey {token}").parse().expect("ASCII metadata"),
        );
        request
    }

    async fn list(&self, message: pb::ListUsersRequest) -> pb::ListUsersResponse {
        self.try_list(message).await.expect("ListUsers succeeds")
    }

    async fn try_list(
        &self,
        message: pb::ListUsersRequest,
    ) -> Result<pb::ListUsersResponse, tonic::Status> {
        self.users
            .clone()
            .list_users(Self::authorized(&self.token, message))
            .await
            .map(tonic::Response::into_inner)
    }
}

pub struct Scenario {
    pub name: String,
    request: pb::ListUsersRequest,
    filter: MemberFilter,
    after: Option<Uuid>,
}

/// The token of the page that starts at member `position`, found by following
/// `next_page_token` with page_size 1000 (untimed).
pub async fn deep_page_token(client: &Client, position: u32) -> String {
    // Member i is at list position i + 1: the page starts after `position` rows.
    let mut remaining = position;
    let mut token = String::new();
    let started = Instant::now();
    while remaining > 0 {
        let size = remaining.min(1000);
        let response = client
            .list(pb::ListUsersRequest {
                page_token: token,
                ..client.request(size as i32)
            })
            .await;
        token = response.next_page_token;
        assert!(!token.is_empty(), "the account ended before {position}");
        remaining -= size;
    }
    let first = client
        .list(pb::ListUsersRequest {
            page_token: token.clone(),
            ..client.request(1)
        })
        .await;
    let email = first.users.first().map(|user| user.email.clone());
    eprintln!(
        "walked to member {position} in {:.1} s; the page starts with {email:?}",
        started.elapsed().as_secs_f64()
    );
    token
}

pub fn scenarios(client: &Client, deep: (u32, String, Uuid)) -> Vec<Scenario> {
    let (position, token, after) = deep;
    let search = |text: &str| MemberFilter {
        search: Some((text.to_lowercase(), None)),
        ..Default::default()
    };
    let first = client.request(50);
    vec![
        Scenario {
            name: "ListUsers page 1, page_size 50".into(),
            request: first.clone(),
            filter: MemberFilter::default(),
            after: None,
        },
        Scenario {
            name: format!("ListUsers the page at member {position}"),
            request: pb::ListUsersRequest {
                page_token: token,
                ..first.clone()
            },
            filter: MemberFilter::default(),
            after: Some(after),
        },
        Scenario {
            name: "ListUsers status INVITED".into(),
            request: pb::ListUsersRequest {
                status: Some(pb::UserStatus::Invited as i32),
                ..first.clone()
            },
            filter: MemberFilter {
                status: Some(MemberStatus::Invited),
                ..Default::default()
            },
            after: None,
        },
        Scenario {
            name: "ListUsers role ENGINEERS".into(),
            request: pb::ListUsersRequest {
                role: Some(pb::Role::Engineers as i32),
                ..first.clone()
            },
            filter: MemberFilter {
                role: Some(Role::Engineers),
                ..Default::default()
            },
            after: None,
        },
        Scenario {
            name: "ListUsers two_factor_enabled".into(),
            request: pb::ListUsersRequest {
                two_factor_enabled: Some(true),
                ..first.clone()
            },
            filter: MemberFilter {
                two_factor_enabled: Some(true),
                ..Default::default()
            },
            after: None,
        },
        Scenario {
            name: format!("ListUsers search `{EMAIL_FRAGMENT}` (email)"),
            request: pb::ListUsersRequest {
                search: EMAIL_FRAGMENT.into(),
                ..first.clone()
            },
            filter: search(EMAIL_FRAGMENT),
            after: None,
        },
        Scenario {
            name: format!("ListUsers search `{NAME_FRAGMENT}` (name)"),
            request: pb::ListUsersRequest {
                search: NAME_FRAGMENT.into(),
                ..first
            },
            filter: search(NAME_FRAGMENT),
            after: None,
        },
    ]
}

const EMAIL_FRAGMENT: &str = "member77777";
const NAME_FRAGMENT: &str = "Member 31415";

/// Sequential calls: `warmup` untimed, then `iterations` timed, or fewer (at least
/// `min_calls`) once `budget` has passed. Returns the latencies (failed calls included),
/// the users the last call returned, and the failures by code.
pub async fn time_calls(
    client: &Client,
    scenario: &Scenario,
    (warmup, iterations, min_calls): (usize, usize, usize),
    budget: Duration,
) -> (Stats, usize, String) {
    let started = Instant::now();
    for _ in 0..warmup {
        let _ = client.try_list(scenario.request.clone()).await;
        if started.elapsed() > budget / 10 {
            break;
        }
    }
    let started = Instant::now();
    let mut samples = Vec::with_capacity(iterations);
    let mut returned = 0;
    let mut failures = Vec::new();
    while samples.len() < iterations && (samples.len() < min_calls || started.elapsed() < budget) {
        let call = Instant::now();
        match client.try_list(scenario.request.clone()).await {
            Ok(response) => returned = response.users.len(),
            Err(status) => failures.push(format!("{:?}", status.code())),
        }
        samples.push(call.elapsed());
    }
    let failed = if failures.is_empty() {
        String::new()
    } else {
        format!(", {} failed: {}", failures.len(), failures.join(" "))
    };
    (Stats::of(samples), returned, failed)
}

/// Runs of a floor on SQLite however slow it is.
const MIN_SAMPLES: usize = 10;

/// The page query the store sends for the scenario, captured.
async fn page_query(
    db: &DatabaseConnection,
    account_id: Uuid,
    scenario: &Scenario,
    now: DateTime<Utc>,
) -> Statement {
    let captured: Arc<Mutex<Vec<Statement>>> = Arc::default();
    let mut probe = db.clone();
    let sink = captured.clone();
    probe.set_metric_callback(move |info| {
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(info.statement.clone());
    });
    Store::new(probe)
        .list_members(account_id, &scenario.filter, scenario.after, 51, now)
        .await
        .expect("the page query runs");
    // A search on PostgreSQL first samples users (`Store::rare_part`); the page query is
    // the first that reads the memberships.
    let statements = captured.lock().unwrap_or_else(PoisonError::into_inner);
    statements
        .iter()
        .find(|statement| statement.sql.contains(r#"FROM "memberships""#))
        .cloned()
        .expect("a captured page query")
}

/// The floor: the page query alone, `iterations` times one after the other; by pgbench on
/// PostgreSQL (values inlined), through sqlx on SQLite (fewer once `budget` has passed).
pub async fn floor(
    db: &DatabaseConnection,
    database_url: &str,
    work: &Path,
    account_id: Uuid,
    (index, scenario): (usize, &Scenario),
    (iterations, budget): (usize, Duration),
    now: DateTime<Utc>,
) -> Figure {
    let statement = page_query(db, account_id, scenario, now).await;
    if db.get_database_backend() == DbBackend::Postgres {
        let script = work.join(format!("list-{index}.sql"));
        std::fs::write(&script, format!("{statement};\n")).expect("write the script");
        let run = pgbench::latencies(database_url, &script, iterations);
        return Figure::Latency(run);
    }
    for _ in 0..3 {
        db.query_all_raw(statement.clone())
            .await
            .expect("the page query runs");
    }
    let started = Instant::now();
    let mut samples: Vec<Duration> = Vec::with_capacity(iterations);
    while samples.len() < iterations && (samples.len() < MIN_SAMPLES || started.elapsed() < budget)
    {
        let started = Instant::now();
        db.query_all_raw(statement.clone())
            .await
            .expect("the page query runs");
        samples.push(started.elapsed());
    }
    Figure::Latency(Stats::of(samples))
}
