//! Storage: SeaORM entities and the queries of each use case, one transaction per change.
//! Works on SQLite (the embedded default) and PostgreSQL (production).
//!
//! What leaves this module is read models of the domain (`Member`, `ApiToken`,
//! `AuditEvent`, …) and [`Error`]; entities, rows and SeaORM's errors stay inside. A change
//! locks what it must, loads the facts, asks the domain's rule, and writes the decision,
//! its audit event and its outbox email in one transaction.

mod accept;
mod accounts;
mod audit;
mod changes;
pub mod entity;
mod error;
mod feed;
mod held_pool;
mod invitations;
mod invite_statements;
mod member_list;
mod members;
pub mod outbox;
mod quota;
mod readers;
mod rows;
pub mod stats;
mod template;
mod tokens;

pub use accept::{Accepted, Pending};
pub use accounts::Bootstrapped;
pub use error::Error;
pub use feed::{Change, ChangeWakes};
pub use invitations::{InviteAttempt, InviteRequestId, Invited, Inviter, NewInvitation, Renewal};
pub use invite_statements::{chained_inserts, invite_facts_statement};
pub use member_list::{MemberCount, MemberFilter};
pub use outbox::OutboxEmail;
pub use readers::{ReadFacts, Reader, caller_statement, member_statement};
pub use stats::OutboxStats;
pub use tokens::NewToken;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, EntityTrait, QuerySelect,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

use entity::account;
use held_pool::{Either, HeldPool, Reads, WriteTransaction};

/// The service's database: a pool of connections for writes, and one for reads. On
/// PostgreSQL the transactions that write and the reads outside transactions have pools
/// whose connections go back without a round trip ([`held_pool`]); on SQLite the writer is
/// a single connection and the readers a pool of their own beside it (WAL lets them read
/// while it writes). ListUsers' queries have a pool of their own on PostgreSQL (`lists`).
#[derive(Clone, Debug)]
pub struct Store {
    /// SeaORM's pool: migrations, the notifier's and the other single statements that
    /// write, and on SQLite (or a store built on one pool) the transactions too.
    db: DatabaseConnection,
    /// PostgreSQL: the transactions that write ([`Store::begin_write`]).
    writes: Option<HeldPool>,
    reader: Reads,
    /// ListUsers' pages and counts. PostgreSQL: a pool of its own whose statements are
    /// planned for their values each time (`plan_cache_mode = force_custom_plan`): the
    /// best plan of a page or a search depends on the account and the pattern, which a
    /// generic plan does not know. Every other statement keeps its cached plan, which saves
    /// a planning of the joins on every call. Elsewhere the same pool as `reader`.
    lists: Reads,
    /// PostgreSQL: one connection of its own for health pings, so that calls that hold
    /// every connection of the pool do not read as an outage.
    probe: Option<DatabaseConnection>,
    /// PostgreSQL: one connection of its own that LISTENs for committed changes
    /// (`feed`), so that the calls keep every connection of the pool.
    listener: Option<DatabaseConnection>,
}

/// A listed item with the key its page continues after.
#[derive(Clone, Debug, PartialEq)]
pub struct Keyed<T> {
    pub key: Uuid,
    pub item: T,
}

impl Store {
    /// A store whose reads and writes share one pool.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            reader: Reads::Pool(db.clone()),
            lists: Reads::Pool(db.clone()),
            db,
            writes: None,
            probe: None,
            listener: None,
        }
    }

    /// Opens the pools on the database the URL names.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with_timeout(url, DEFAULT_TIMEOUT).await
    }

    /// Opens the pools on the database the URL names; a call waits at most `timeout` for a
    /// connection (opening one, or a free one from the pool).
    pub async fn connect_with_timeout(url: &str, timeout: Duration) -> Result<Self, Error> {
        let db = connect_with_timeout(url, timeout).await?;
        let (writes, reader, lists) = if url.starts_with("sqlite:") {
            let readers = match sqlite_readers(url, timeout) {
                Some(readers) => readers.await?,
                None => db.clone(),
            };
            (None, Reads::Pool(readers.clone()), Reads::Pool(readers))
        } else {
            let held = postgres_held_pools(&db, timeout)?;
            (
                Some(held.writes),
                Reads::Held(held.reads),
                Reads::Held(held.lists),
            )
        };
        let probe = match url.starts_with("sqlite:") {
            true => None,
            false => Some(connect_probe(url, timeout).await?),
        };
        let listener = match url.starts_with("sqlite:") {
            true => None,
            false => Some(connect_probe(url, timeout).await?),
        };
        Ok(Self {
            db,
            writes,
            reader,
            lists,
            probe,
            listener,
        })
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), Error> {
        Ok(migrate(&self.db).await?)
    }

    /// Whether the database answers: on PostgreSQL on a connection of its own (a pool that
    /// calls keep busy is not an outage), on SQLite the readers' pool (the single writer may
    /// be busy with a long write).
    pub async fn ping(&self) -> Result<(), Error> {
        let pool = match (&self.probe, &self.reader) {
            (Some(probe), _) => probe,
            (None, Reads::Pool(readers)) => readers,
            (None, Reads::Held(_)) => &self.db,
        };
        Ok(pool.ping().await?)
    }

    fn backend(&self) -> sea_orm::DatabaseBackend {
        self.db.get_database_backend()
    }

    /// The connection pool, for wiring and tests.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The pool of the reads outside transactions, for tests.
    pub fn read_connection(&self) -> &impl ConnectionTrait {
        &self.reader
    }

    /// The pool of ListUsers' queries, for tests.
    pub fn list_connection(&self) -> &impl ConnectionTrait {
        &self.lists
    }

    /// Closes the pools once the calls holding their connections have finished.
    pub async fn close(self) -> Result<(), Error> {
        if let Some(listener) = self.listener {
            listener.close().await?;
        }
        if let Some(probe) = self.probe {
            probe.close().await?;
        }
        if let Some(writes) = self.writes {
            writes.close().await;
        }
        match (self.reader, self.lists) {
            (Reads::Held(reads), Reads::Held(lists)) => {
                reads.close().await;
                lists.close().await;
            }
            // The same pool as `db` when the store has one pool: closing twice is harmless.
            (Reads::Pool(readers), _) | (_, Reads::Pool(readers)) => readers.close().await?,
        }
        Ok(self.db.close().await?)
    }

    /// Begins a transaction that will write: on PostgreSQL on a connection of `writes`.
    ///
    /// On SQLite it starts with `BEGIN IMMEDIATE`: the write lock is taken up front, so a
    /// second process on the same file waits for it (busy timeout) instead of failing when
    /// its read-then-write transaction cannot upgrade.
    async fn begin_write(&self) -> Result<WriteTransaction, DbErr> {
        if let Some(writes) = &self.writes {
            return Ok(Either::Held(writes.begin().await?));
        }
        let transaction = self
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?;
        Ok(Either::Pool(transaction))
    }
}

/// A connection idle for this long is tested before a call gets it: one broken by an
/// outage is replaced. One in steady use is not: the test is a round trip per call.
const TEST_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// How long a call waits for a connection unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool's options: no statement logging, `timeout` to open a connection or wait for one.
fn pool_options(url: &str, timeout: Duration) -> ConnectOptions {
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .connect_timeout(timeout)
        .acquire_timeout(timeout);
    options
}

/// Opens a pool on the database the URL names.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    connect_with_timeout(url, DEFAULT_TIMEOUT).await
}

/// Opens a pool on the database the URL names, whose callers wait at most `timeout` for a
/// connection. While the database is down, a call fails after that long instead of waiting
/// for its deadline; the pool tests a connection that has been idle before handing it out
/// (a connection broken by the outage is replaced) and opens new ones as the database
/// returns.
pub async fn connect_with_timeout(
    url: &str,
    timeout: Duration,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = pool_options(url, timeout);
    options.test_before_acquire_if_idle_for(TEST_IF_IDLE_FOR);
    if url.starts_with("sqlite:") {
        // SQLite has one writer at a time: one connection serialises this process's
        // transactions instead of failing them with SQLITE_BUSY under load. WAL lets
        // readers in other processes go on while one writes; the busy timeout makes a
        // second process on the same file wait its turn.
        options
            .max_connections(1)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|sqlite| {
                sqlite
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10))
            });
    } else {
        // The transactions have a pool of their own (`WRITE_CONNECTIONS`); this one serves
        // the single statements that write (the notifier's, a token's last use) and
        // migrations.
        options
            .max_connections(SINGLE_WRITE_CONNECTIONS)
            .min_connections(1);
    }
    Database::connect(options).await
}

/// Connections the transactions that write may hold at once, per replica (PostgreSQL).
const WRITE_CONNECTIONS: usize = 16;

/// Connections SeaORM's pool may hold at once, per replica, on PostgreSQL: the single
/// statements that write, and migrations.
const SINGLE_WRITE_CONNECTIONS: u32 = 6;

/// Connections the reads outside transactions may hold at once, per replica (PostgreSQL).
const READ_CONNECTIONS: usize = 16;

/// Connections ListUsers' queries may hold at once, per replica (PostgreSQL).
const LIST_CONNECTIONS: usize = 10;

/// PostgreSQL's pools whose connections go back without a round trip ([`held_pool`]).
struct HeldPools {
    writes: HeldPool,
    reads: HeldPool,
    lists: HeldPool,
}

/// PostgreSQL: the pools of the transactions that write, of the reads outside
/// transactions and of ListUsers' queries, on the database `db` connects to and with its
/// settings; their connections are opened as calls need them.
///
/// ListUsers' pool: sqlx prepares each statement once per connection; after five
/// executions PostgreSQL may switch it to a generic plan that knows neither the account
/// nor the search pattern, and picks worse indexes for it. There each execution is planned
/// for its values (`plan_cache_mode = force_custom_plan`), which costs a fraction of a
/// millisecond.
fn postgres_held_pools(db: &DatabaseConnection, timeout: Duration) -> Result<HeldPools, DbErr> {
    let options = (*db.get_postgres_connection_pool().connect_options()).clone();
    let lists = options
        .clone()
        .options([("plan_cache_mode", "force_custom_plan")]);
    Ok(HeldPools {
        writes: HeldPool::new(
            options.clone(),
            WRITE_CONNECTIONS,
            timeout,
            TEST_IF_IDLE_FOR,
        )?,
        reads: HeldPool::new(options, READ_CONNECTIONS, timeout, TEST_IF_IDLE_FOR)?,
        lists: HeldPool::new(lists, LIST_CONNECTIONS, timeout, TEST_IF_IDLE_FOR)?,
    })
}

/// A pool of one connection of its own on PostgreSQL (health pings, the change listener),
/// opened again after an outage.
async fn connect_probe(url: &str, timeout: Duration) -> Result<DatabaseConnection, DbErr> {
    let mut options = pool_options(url, timeout);
    options
        .test_before_acquire(false)
        .max_connections(1)
        .min_connections(0);
    Database::connect(options).await
}

/// Read-only connections beside SQLite's single writer.
const SQLITE_READERS: u32 = 4;

/// A pool of read-only connections on a SQLite file, or `None` for PostgreSQL and in-memory
/// databases (each connection to those would see a database of its own).
fn sqlite_readers(
    url: &str,
    timeout: Duration,
) -> Option<impl Future<Output = Result<DatabaseConnection, DbErr>>> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !url.starts_with("sqlite:") || in_memory {
        return None;
    }
    let mut options = pool_options(url, timeout);
    options
        .max_connections(SQLITE_READERS)
        .min_connections(1)
        .map_sqlx_sqlite_opts(|sqlite| {
            sqlite.read_only(true).busy_timeout(Duration::from_secs(10))
        });
    Some(Database::connect(options))
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Serialises the changes that must keep an account's invariants (its last administrator,
/// its token cap, who may do what) by locking the account's row for the rest of the
/// transaction. SQLite already runs one writer at a time.
async fn lock_account(db: &impl ConnectionTrait, account_id: Uuid) -> Result<(), DbErr> {
    account::Entity::find_by_id(account_id)
        .lock_exclusive()
        .one(db)
        .await?;
    Ok(())
}

/// Holds the account's row in share mode: changes that only depend on who may do what
/// (an invitation, a resend, deleting a token) run side by side, but not beside a change
/// of roles or members, which takes [`lock_account`].
async fn lock_account_shared(db: &impl ConnectionTrait, account_id: Uuid) -> Result<(), DbErr> {
    account::Entity::find_by_id(account_id)
        .lock_shared()
        .one(db)
        .await?;
    Ok(())
}
