//! What the metrics read at scrape time: the outbox's backlog and the pools' use. Each is
//! one cheap query on an index (`ix_outbox_waiting`, `ix_outbox_dead`) or no query at all.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseBackend, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Select,
    Statement,
};

use super::entity::outbox;
use super::{Error, Reads, Store};

/// The outbox at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Emails not yet sent and not given up.
    pub waiting: u64,
    /// Emails given up (dead or superseded).
    pub failed: u64,
    /// When the oldest waiting email was queued.
    pub oldest_waiting_since: Option<DateTime<Utc>>,
}

/// Counts the waiting emails and finds the oldest: on the partial index `ix_outbox_waiting`.
fn waiting() -> Select<outbox::Entity> {
    outbox::Entity::find()
        .select_only()
        .column_as(outbox::Column::Id.count(), "waiting")
        .column_as(outbox::Column::CreatedAt.min(), "oldest")
        .filter(outbox::Column::SentAt.is_null())
        .filter(outbox::Column::DeadAt.is_null())
}

/// Counts the emails given up: on the partial index `ix_outbox_dead`.
fn failed() -> Select<outbox::Entity> {
    outbox::Entity::find()
        .select_only()
        .column_as(outbox::Column::Id.count(), "failed")
        .filter(outbox::Column::DeadAt.is_not_null())
}

/// The statements [`Store::outbox_stats`] runs, for `EXPLAIN`.
pub fn outbox_stats_statements(backend: DatabaseBackend) -> [Statement; 2] {
    [waiting().build(backend), failed().build(backend)]
}

impl Store {
    /// Counts the waiting and the failed emails, and finds the oldest waiting one.
    pub async fn outbox_stats(&self) -> Result<OutboxStats, Error> {
        let (waiting, oldest_waiting_since) = waiting()
            .into_tuple::<(i64, Option<DateTime<Utc>>)>()
            .one(&self.reader)
            .await?
            .unwrap_or_default();
        let failed = failed()
            .into_tuple::<i64>()
            .one(&self.reader)
            .await?
            .unwrap_or_default();
        Ok(OutboxStats {
            waiting: u64::try_from(waiting).unwrap_or_default(),
            failed: u64::try_from(failed).unwrap_or_default(),
            oldest_waiting_since,
        })
    }

    /// Connections in use (not idle) in each pool: `writer`; on PostgreSQL `writes` (the
    /// transactions that write), `reads` (reads outside transactions) and `lists`
    /// (ListUsers' queries), on SQLite `reader`.
    pub fn connections_in_use(&self) -> Vec<(&'static str, u64)> {
        fn in_use(size: u32, idle: usize) -> u64 {
            u64::from(size).saturating_sub(idle as u64)
        }
        match (self.db.get_database_backend(), &self.reader) {
            (DatabaseBackend::Postgres, reads) => {
                let pool = self.db.get_postgres_connection_pool();
                let mut pools = vec![("writer", in_use(pool.size(), pool.num_idle()))];
                if let Some(writes) = &self.writes {
                    pools.push(("writes", writes.size_and_in_use().1 as u64));
                }
                for (name, held) in [("reads", reads), ("lists", &self.lists)] {
                    if let Reads::Held(held) = held {
                        pools.push((name, held.size_and_in_use().1 as u64));
                    }
                }
                pools
            }
            (DatabaseBackend::Sqlite, Reads::Pool(reader)) => {
                let writer = self.db.get_sqlite_connection_pool();
                let reader = reader.get_sqlite_connection_pool();
                vec![
                    ("writer", in_use(writer.size(), writer.num_idle())),
                    ("reader", in_use(reader.size(), reader.num_idle())),
                ]
            }
            _ => Vec::new(),
        }
    }
}
