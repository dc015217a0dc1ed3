//! PostgreSQL's connections that go back to their pool without a round trip: the reads
//! outside transactions, ListUsers' queries, and the transactions that write.
//!
//! sqlx's pool tests every connection it takes back with a round trip of its own (`Sync`,
//! then a wait for `ReadyForQuery`), so a read of one statement costs two round trips there,
//! a transaction one more than its statements, and the database wakes once more for each.
//! Here a connection whose statement or transaction ended is ready for the next one as it
//! is. One whose statement was cut short (by the network, or by a call cancelled half-way)
//! is closed instead of being reused, and one idle for a while is tested before it is
//! handed out, as the other pools do: a connection broken by a database restart is replaced
//! before a call meets it.
//!
//! A [`HeldTransaction`] dropped before its COMMIT is rolled back at once, on a task of its
//! own, so that its locks go with it; its connection returns to the pool after the ROLLBACK.

use std::{fmt, sync::Arc, time::Duration};

use deadpool::{
    Runtime,
    managed::{self, Metrics, Object, PoolError, QueueMode, RecycleError, RecycleResult},
};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    ExecResult, QueryResult, RuntimeErr, Statement,
    sea_query::Values,
    sqlx::{
        self, Connection, PgConnection,
        postgres::{PgConnectOptions, PgDatabaseError, PgQueryResult, PgSeverity},
    },
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

/// Opens the pool's connections and decides whether one may be handed out again.
struct Opener {
    options: PgConnectOptions,
    test_if_idle_for: Duration,
}

/// A connection, and whether it may be handed out again: its last statement ran to its
/// end, and no transaction of it is waiting for a ROLLBACK.
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

/// Up to `size` connections, opened as calls need them.
#[derive(Clone)]
pub struct HeldPool {
    pool: managed::Pool<Opener>,
}

impl fmt::Debug for HeldPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldPool")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl HeldPool {
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
            .map_err(|error| DbErr::Custom(format!("a held pool: {error}")))?;
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
    async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, DbErr> {
        let mut held = self.pool.get().await.map_err(acquire_error)?;
        held.run(work).await
    }

    /// Begins a transaction on a connection of the pool.
    pub async fn begin(&self) -> Result<HeldTransaction, DbErr> {
        let mut held = self.pool.get().await.map_err(acquire_error)?;
        if let Err(error) = held
            .run(async |connection| simple(connection, "BEGIN").await)
            .await
        {
            if !held.clean {
                // It may be in a transaction the database has begun: closed, not reused.
                drop(Object::take(held));
            }
            return Err(error);
        }
        Ok(HeldTransaction {
            held: Mutex::new(Some(held)),
        })
    }
}

impl Held {
    /// Runs `work` on the connection, and notes whether the connection is still in step
    /// with the database after it: it is unless `work` was cut short, by the network or by
    /// the call being cancelled half-way. A statement the database refused leaves it in
    /// step (its transaction, if any, aborted).
    async fn run<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, DbErr> {
        self.clean = false;
        let done = work(&mut self.connection).await;
        self.clean = match &done {
            Ok(_) => true,
            // An ERROR ends the statement (and aborts its transaction, if any); a FATAL or
            // PANIC one, also the session: the server closes the connection after it.
            Err(sqlx::Error::Database(error)) => error
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|error| error.severity() == PgSeverity::Error),
            Err(_) => false,
        };
        done.map_err(|error| DbErr::Query(RuntimeErr::SqlxError(Arc::new(error))))
    }
}

/// A transaction on a connection of a [`HeldPool`]: BEGIN when made, COMMIT by
/// [`HeldTransaction::commit`]. Dropped without it (an error, a refusal, a cancelled call),
/// it is rolled back at once on a task of its own, or its connection closed if a statement
/// was cut short; the database rolls back a transaction whose connection closes.
pub struct HeldTransaction {
    /// `None` once the transaction has ended.
    held: Mutex<Option<Object<Opener>>>,
}

impl fmt::Debug for HeldTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldTransaction").finish_non_exhaustive()
    }
}

impl HeldTransaction {
    /// Commits; the connection goes back to its pool.
    pub async fn commit(mut self) -> Result<(), DbErr> {
        let held = self.held.get_mut();
        let done = match held.as_mut() {
            Some(held) => {
                held.run(async |connection| simple(connection, "COMMIT").await)
                    .await
            }
            None => Err(ended()),
        };
        // Whether COMMIT succeeded or the database refused it, the transaction has ended.
        if let Some(held) = held.take()
            && !held.clean
        {
            drop(Object::take(held));
        }
        done.map(drop)
    }

    async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, DbErr> {
        let mut held = self.held.lock().await;
        held.as_mut().ok_or_else(ended)?.run(work).await
    }
}

fn ended() -> DbErr {
    DbErr::Custom("the transaction has ended".into())
}

impl Drop for HeldTransaction {
    fn drop(&mut self) {
        let Some(mut held) = self.held.get_mut().take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if held.clean => {
                // Not reused unless the ROLLBACK below runs to its end: a task the runtime
                // drops unrun (it is shutting down) leaves a connection the pool closes.
                held.clean = false;
                runtime.spawn(async move {
                    let rolled_back = tokio::time::timeout(
                        ROLLBACK_WITHIN,
                        held.run(async |connection| simple(connection, "ROLLBACK").await),
                    )
                    .await;
                    if !matches!(rolled_back, Ok(Ok(_))) {
                        drop(Object::take(held));
                    }
                });
            }
            // Closing the connection ends its transaction.
            _ => drop(Object::take(held)),
        }
    }
}

/// How long the ROLLBACK of a dropped transaction may take before its connection is closed
/// instead (a network that drops packets would otherwise hold it for minutes).
const ROLLBACK_WITHIN: Duration = Duration::from_secs(5);

/// Sends `sql`, without values, as a simple query.
async fn simple(
    connection: &mut PgConnection,
    sql: &'static str,
) -> Result<PgQueryResult, sqlx::Error> {
    sqlx::raw_sql(sql).execute(connection).await
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

/// SeaORM's statements on a type whose `run` gives them a connection: [`HeldPool`] (a
/// connection of the pool for each statement) and [`HeldTransaction`] (its own).
macro_rules! statements_through_run {
    ($type:ty) => {
        #[async_trait::async_trait]
        impl ConnectionTrait for $type {
            fn get_database_backend(&self) -> DbBackend {
                DbBackend::Postgres
            }

            async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
                let done = self
                    .run(async |connection| query(statement).execute(connection).await)
                    .await?;
                Ok(done.into())
            }

            async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
                let done = self
                    .run(async |connection| {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(connection)
                            .await
                    })
                    .await?;
                Ok(done.into())
            }

            async fn query_one_raw(
                &self,
                statement: Statement,
            ) -> Result<Option<QueryResult>, DbErr> {
                let row = self
                    .run(async |connection| query(statement).fetch_optional(connection).await)
                    .await?;
                Ok(row.map(QueryResult::from))
            }

            async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
                let rows = self
                    .run(async |connection| query(statement).fetch_all(connection).await)
                    .await?;
                Ok(rows.into_iter().map(QueryResult::from).collect())
            }
        }
    };
}

statements_through_run!(HeldPool);
statements_through_run!(HeldTransaction);

/// SeaORM's own connection (`Pool`: a sqlx pool, or a transaction on one) or the held
/// pool's (`Held`); statements go to whichever it is.
#[derive(Clone, Debug)]
pub enum Either<P, H> {
    Pool(P),
    Held(H),
}

/// Where the store's reads outside transactions go: a sqlx pool (SQLite's readers, or the
/// one pool of a store built on a single connection), or PostgreSQL's [`HeldPool`].
pub type Reads = Either<DatabaseConnection, HeldPool>;

/// A transaction that writes: SeaORM's (SQLite, or a store built on one pool), or one of
/// PostgreSQL's [`HeldPool`] of writers.
pub type WriteTransaction = Either<DatabaseTransaction, HeldTransaction>;

impl WriteTransaction {
    pub async fn commit(self) -> Result<(), DbErr> {
        match self {
            Either::Pool(transaction) => transaction.commit().await,
            Either::Held(transaction) => transaction.commit().await,
        }
    }
}

#[async_trait::async_trait]
impl<P: ConnectionTrait + Send + Sync, H: ConnectionTrait + Send + Sync> ConnectionTrait
    for Either<P, H>
{
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Either::Pool(pool) => pool.get_database_backend(),
            Either::Held(held) => held.get_database_backend(),
        }
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Either::Pool(pool) => pool.execute_raw(statement).await,
            Either::Held(held) => held.execute_raw(statement).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Either::Pool(pool) => pool.execute_unprepared(sql).await,
            Either::Held(held) => held.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Either::Pool(pool) => pool.query_one_raw(statement).await,
            Either::Held(held) => held.query_one_raw(statement).await,
        }
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Either::Pool(pool) => pool.query_all_raw(statement).await,
            Either::Held(held) => held.query_all_raw(statement).await,
        }
    }
}
