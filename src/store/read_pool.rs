//! PostgreSQL's reads outside transactions, on connections that go back to their pool
//! without a round trip.
//!
//! sqlx's pool tests every connection it takes back with a round trip of its own (`Sync`,
//! then a wait for `ReadyForQuery`), so a read of one statement costs two round trips there,
//! and the database wakes twice for it. Here a connection whose statement ended is ready for
//! the next one as it is. One whose statement failed or was given up half-way (the call was
//! cancelled) is closed and replaced instead of being reused, and one idle for a while is
//! tested before it is handed out, as the other pools do: a connection broken by a database
//! restart is replaced before a call meets it.

use std::{fmt, sync::Arc, time::Duration};

use deadpool::{
    Runtime,
    managed::{self, Metrics, Object, PoolError, QueueMode, RecycleError, RecycleResult},
};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult,
    RuntimeErr, Statement,
    sea_query::Values,
    sqlx::{self, Connection, PgConnection, postgres::PgConnectOptions},
};
use sea_query_sqlx::SqlxValues;

/// Opens the pool's connections and decides whether one may be handed out again.
struct Opener {
    options: PgConnectOptions,
    test_if_idle_for: Duration,
}

/// A connection, and whether its last statement ran to its end.
pub struct Held {
    connection: PgConnection,
    clean: bool,
}

impl managed::Manager for Opener {
    type Type = Held;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Held, sqlx::Error> {
        Ok(Held {
            connection: PgConnection::connect_with(&self.options).await?,
            clean: true,
        })
    }

    async fn recycle(&self, held: &mut Held, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        if !held.clean {
            return Err(RecycleError::message("its last statement did not finish"));
        }
        if metrics.last_used() > self.test_if_idle_for {
            held.connection.ping().await?;
        }
        Ok(())
    }
}

/// Up to `size` connections for reads, opened as calls need them.
#[derive(Clone)]
pub struct ReadPool {
    pool: managed::Pool<Opener>,
}

impl fmt::Debug for ReadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadPool")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl ReadPool {
    /// A pool on the database `options` name. A call waits at most `timeout` for a
    /// connection (a free one, a new one, or the test of an idle one).
    pub fn new(
        options: PgConnectOptions,
        size: usize,
        timeout: Duration,
        test_if_idle_for: Duration,
    ) -> Result<Self, DbErr> {
        let opener = Opener {
            options,
            test_if_idle_for,
        };
        let pool = managed::Pool::builder(opener)
            .max_size(size.max(1))
            // The connection used last goes out first: its statements are prepared and its
            // plans cached, and the others may stay idle.
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|error| DbErr::Custom(format!("the read pool: {error}")))?;
        Ok(Self { pool })
    }

    /// Connections open, and those of them handed out now.
    pub fn size_and_in_use(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.size.saturating_sub(status.available))
    }

    /// Closes the idle connections politely, then the pool: a connection still in use is
    /// closed when its call ends.
    pub async fn close(&self) {
        let idle = self.pool.status().available;
        for _ in 0..idle {
            let Ok(held) = self.pool.timeout_get(&no_wait()).await else {
                break;
            };
            let _ = Object::take(held).connection.close().await;
        }
        self.pool.close();
    }

    /// Runs `work` on a connection; the connection is reused only if `work` finished.
    async fn with_connection<T>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, DbErr> {
        let mut held = self.pool.get().await.map_err(acquire_error)?;
        held.clean = false;
        let done = work(&mut held.connection).await;
        // A statement the database refused leaves the connection usable; one cut short by
        // the network does not. Either way the connection is closed to be safe: errors are
        // rare, and a reconnection costs less than a doubt.
        held.clean = done.is_ok();
        done.map_err(|error| DbErr::Query(RuntimeErr::SqlxError(Arc::new(error))))
    }
}

/// Take only a connection that is free now; never wait for or open one.
fn no_wait() -> managed::Timeouts {
    managed::Timeouts {
        wait: Some(Duration::ZERO),
        create: Some(Duration::ZERO),
        recycle: Some(Duration::ZERO),
    }
}

fn acquire_error(error: PoolError<sqlx::Error>) -> DbErr {
    match error {
        PoolError::Timeout(_) => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        PoolError::Closed | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)
        }
        PoolError::Backend(error) => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(error))),
    }
}

/// The statement as sqlx sends it: its text and its values, bound as parameters (both
/// moved, not copied).
fn query(statement: Statement) -> sqlx::query::Query<'static, sqlx::Postgres, SqlxValues> {
    let values = statement.values.unwrap_or(Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(statement.sql), SqlxValues(values))
}

#[async_trait::async_trait]
impl ConnectionTrait for ReadPool {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        let done = self
            .with_connection(async |connection| query(statement).execute(connection).await)
            .await?;
        Ok(done.into())
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let done = self
            .with_connection(async |connection| {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(connection)
                    .await
            })
            .await?;
        Ok(done.into())
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        let row = self
            .with_connection(async |connection| query(statement).fetch_optional(connection).await)
            .await?;
        Ok(row.map(QueryResult::from))
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let rows = self
            .with_connection(async |connection| query(statement).fetch_all(connection).await)
            .await?;
        Ok(rows.into_iter().map(QueryResult::from).collect())
    }
}

/// Where the store's reads outside transactions go: a sqlx pool (SQLite's readers, or the
/// one pool of a store built on a single connection), or PostgreSQL's [`ReadPool`].
#[derive(Clone, Debug)]
pub enum Reads {
    Pool(DatabaseConnection),
    Held(ReadPool),
}

#[async_trait::async_trait]
impl ConnectionTrait for Reads {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Reads::Pool(pool) => pool.get_database_backend(),
            Reads::Held(held) => held.get_database_backend(),
        }
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Reads::Pool(pool) => pool.execute_raw(statement).await,
            Reads::Held(held) => held.execute_raw(statement).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Reads::Pool(pool) => pool.execute_unprepared(sql).await,
            Reads::Held(held) => held.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Reads::Pool(pool) => pool.query_one_raw(statement).await,
            Reads::Held(held) => held.query_one_raw(statement).await,
        }
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Reads::Pool(pool) => pool.query_all_raw(statement).await,
            Reads::Held(held) => held.query_all_raw(statement).await,
        }
    }
}
