//! A fresh database per test, dropped when the test ends: SQLite in a temporary folder, or,
//! when `USERMGMT_TEST_DATABASE_URL` names a PostgreSQL server, a new database on it named
//! `USERMGMT_TEST_DATABASE_PREFIX` (default `usermgmt_test_`) and a random suffix.

use sea_orm::{ConnectionTrait, Database, DbErr};
use uuid::Uuid;

const SERVER_URL_VAR: &str = "USERMGMT_TEST_DATABASE_URL";
const PREFIX_VAR: &str = "USERMGMT_TEST_DATABASE_PREFIX";
const DEFAULT_PREFIX: &str = "usermgmt_test_";
/// PostgreSQL's limit on identifiers, in bytes.
const MAX_NAME_LEN: usize = 63;

/// A test's own database; dropping the guard drops the database, even when the test panics.
pub struct TestDatabase {
    url: String,
    engine: Engine,
}

enum Engine {
    /// The folder goes, and the database file with it, when the guard is dropped.
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres {
        server_url: String,
        name: String,
    },
}

impl TestDatabase {
    /// The URL the service and the store connect to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A fresh database on PostgreSQL when `USERMGMT_TEST_DATABASE_URL` is set, else on SQLite.
pub async fn fresh_database() -> TestDatabase {
    match postgres_server_url() {
        Some(server_url) => create_postgres_database(server_url).await,
        None => sqlite_database(),
    }
}

/// A fresh PostgreSQL database, for the tests marked `#[ignore = "needs PostgreSQL"]`:
/// without a server to run on they fail rather than pass having checked nothing.
pub async fn fresh_postgres_database() -> TestDatabase {
    let server_url =
        postgres_server_url().unwrap_or_else(|| panic!("needs PostgreSQL: set {SERVER_URL_VAR}"));
    create_postgres_database(server_url).await
}

fn postgres_server_url() -> Option<String> {
    std::env::var(SERVER_URL_VAR)
        .ok()
        .filter(|url| !url.is_empty())
}

fn sqlite_database() -> TestDatabase {
    let dir = tempfile::tempdir().expect("a temporary folder");
    TestDatabase {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("usermgmt.db").display()
        ),
        engine: Engine::Sqlite { _dir: dir },
    }
}

async fn create_postgres_database(server_url: String) -> TestDatabase {
    let name = format!("{}{}", database_prefix(), Uuid::new_v4().simple());
    let admin = Database::connect(&server_url).await.unwrap_or_else(|err| {
        panic!("{SERVER_URL_VAR} is set but PostgreSQL is unreachable: {err}")
    });
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create the test database");
    admin.close().await.ok();
    let base = server_url.split('?').next().unwrap_or(&server_url);
    let (server, _) = base.rsplit_once('/').expect("a database URL with a path");
    TestDatabase {
        url: format!("{server}/{name}"),
        engine: Engine::Postgres { server_url, name },
    }
}

/// The prefix of this run's database names, so that a run can tell its own databases apart.
fn database_prefix() -> String {
    let prefix = std::env::var(PREFIX_VAR).unwrap_or_else(|_| DEFAULT_PREFIX.into());
    let well_formed = prefix.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && prefix.len() + 32 <= MAX_NAME_LEN;
    assert!(
        well_formed,
        "{PREFIX_VAR}={prefix:?}: use lowercase letters, digits and _, \
         at most {} characters",
        MAX_NAME_LEN - 32
    );
    prefix
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Engine::Postgres { server_url, name } = &self.engine else {
            return;
        };
        // Drop may run inside the test's runtime, which cannot block on a future of its
        // own: the drop gets a thread and a runtime to itself. FORCE ends the sessions the
        // test's pools still hold.
        let (url, database) = (server_url.clone(), name.clone());
        let outcome = std::thread::spawn(move || drop_postgres_database(&url, &database))
            .join()
            .unwrap_or_else(|_| Err("the thread dropping it panicked".into()));
        if let Err(err) = outcome {
            // A second panic while unwinding would abort the whole test binary.
            if std::thread::panicking() {
                eprintln!("the test database {name} was not dropped: {err}");
            } else {
                panic!("the test database {name} was not dropped: {err}");
            }
        }
    }
}

fn drop_postgres_database(server_url: &str, name: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| err.to_string())?;
    runtime
        .block_on(async {
            let admin = Database::connect(server_url).await?;
            let dropped = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
            admin.close().await.ok();
            dropped.map(|_| ())
        })
        .map_err(|err: DbErr| err.to_string())
}
