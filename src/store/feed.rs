//! The account's change stream (WatchChanges): every audit event gets the next number of its
//! account's sequence, and watchers are woken when an event commits.
//!
//! The number comes from the account's counter row, incremented in the event's transaction;
//! the row stays locked until that transaction ends, so an account's events commit in the
//! order of their numbers, and a reader that sees number n sees every number below it. On
//! SQLite, with one writer at a time, that holds by itself.
//!
//! Waking: on PostgreSQL the transaction sends `NOTIFY usermgmt_changes, '<account id>'`,
//! which the server delivers at commit to every replica's listener
//! ([`Store::relay_change_notifications`]). On SQLite a write wakes the watchers of this
//! process as it records the event, before it commits: [`Store::changes_after`] reads in a
//! write transaction there, which waits until the writer has finished. Writers in other
//! processes on the same file are seen on the watchers' next heartbeat.

use std::sync::LazyLock;
use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait, InsertStatement, OnConflict, Query};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, IdenStatic, QueryFilter,
    QueryOrder, QuerySelect,
};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::entity::{account_change_sequence as sequence, audit_event};
use super::{Error, Store, members, rows};
use crate::domain::{Actor, AuditEvent, Role};

/// The PostgreSQL channel commits are announced on; the payload is the account's id.
const CHANNEL: &str = "usermgmt_changes";

/// One audit event at its place in the account's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub seq: i64,
    pub event: AuditEvent,
}

/// What a watcher is woken for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// An event of this account committed (or, on SQLite, is committing).
    Account(Uuid),
    /// Any account may have changed: announcements may have been missed.
    All,
}

/// The wake-ups of this process. One for the process, not one per store: on SQLite, two
/// stores of this process on one file wake each other's watchers. A watcher ignores other
/// accounts' wake-ups.
static WAKES: LazyLock<broadcast::Sender<Wake>> = LazyLock::new(|| broadcast::channel(1024).0);

/// The statement that takes the account's next number (`last_seq`, returned). The counter
/// row stays locked until the transaction ends; callers record their event last, so the
/// hold is short.
pub(super) fn next_seq_statement(account_id: Uuid) -> Result<InsertStatement, DbErr> {
    let mut insert = Query::insert();
    insert
        .into_table(sequence::Entity)
        .columns([sequence::Column::AccountId, sequence::Column::LastSeq])
        .values([account_id.into(), 1_i64.into()])
        .map_err(|error| DbErr::Custom(error.to_string()))?
        .on_conflict(
            OnConflict::column(sequence::Column::AccountId)
                .value(
                    sequence::Column::LastSeq,
                    Expr::col((sequence::Entity, sequence::Column::LastSeq)).add(1),
                )
                .to_owned(),
        )
        .returning_col(sequence::Column::LastSeq);
    Ok(insert)
}

/// Takes the account's next number, in a statement of its own (see [`next_seq_statement`]).
pub(super) async fn next_seq(db: &impl ConnectionTrait, account_id: Uuid) -> Result<i64, DbErr> {
    let row = db
        .query_one(&next_seq_statement(account_id)?)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the account's change counter".into()))?;
    row.try_get("", sequence::Column::LastSeq.as_str())
}

/// PostgreSQL: the announcement of a change of the account `account_id` names (a uuid),
/// delivered at commit to every replica's listener. Part of the statement that numbers the
/// account's event (`audit::Event::record`).
pub(super) fn announcement(account_id: Expr) -> Expr {
    Expr::cust_with_exprs(format!("pg_notify('{CHANNEL}', $1::text)"), [account_id])
}

/// SQLite: wakes this process's watchers of the account as its event is recorded.
pub(super) fn wake_watchers(account_id: Uuid) {
    // Nobody listening is fine.
    WAKES.send(Wake::Account(account_id)).ok();
}

/// A watcher's wake-ups for one account.
pub struct ChangeWakes {
    account_id: Uuid,
    wakes: broadcast::Receiver<Wake>,
}

impl ChangeWakes {
    /// Returns when the account may have a new change. Cancel-safe.
    pub async fn changed(&mut self) {
        loop {
            match self.wakes.recv().await {
                Ok(Wake::Account(id)) if id != self.account_id => {}
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

impl Store {
    /// Wake-ups for the account's watchers, from now on: subscribe before reading, so that
    /// no change committed after the read goes unnoticed.
    pub fn change_wakes(&self, account_id: Uuid) -> ChangeWakes {
        ChangeWakes {
            account_id,
            wakes: WAKES.subscribe(),
        }
    }

    /// The number of the account's last committed change; 0 before the first.
    #[tracing::instrument(skip_all, fields(%account_id), err(level = "info"))]
    pub async fn last_change(&self, account_id: Uuid) -> Result<i64, Error> {
        Ok(sequence::Entity::find_by_id(account_id)
            .one(&self.reader)
            .await?
            .map_or(0, |counter| counter.last_seq))
    }

    /// Up to `limit` of the account's changes after number `after`, in order. On SQLite it
    /// waits for the write in progress (a watcher woken by it reads once it committed).
    #[tracing::instrument(skip_all, fields(%account_id, after), err(level = "info"))]
    pub async fn changes_after(
        &self,
        account_id: Uuid,
        after: i64,
        limit: u64,
    ) -> Result<Vec<Change>, Error> {
        let query = audit_event::Entity::find()
            .filter(audit_event::Column::AccountId.eq(account_id))
            .filter(audit_event::Column::Seq.gt(after))
            .order_by_asc(audit_event::Column::Seq)
            .limit(limit);
        let rows = match self.db.get_database_backend() {
            DatabaseBackend::Sqlite => {
                let tx = self.begin_write().await?;
                let rows = query.all(&tx).await?;
                tx.commit().await?;
                rows
            }
            _ => query.all(&self.reader).await?,
        };
        rows.into_iter()
            .map(|row| {
                Ok(Change {
                    seq: row.seq,
                    event: rows::audit_event(row)?,
                })
            })
            .collect()
    }

    /// A watcher's role in the account, as now: its credential must still be live, and it
    /// must still be an active member.
    pub async fn watcher_role(&self, account_id: Uuid, actor: &Actor) -> Result<Role, Error> {
        members::acting_role(&self.reader, account_id, actor).await
    }

    /// On PostgreSQL, wakes this process's watchers as the database announces commits, until
    /// `stop`; after a lost connection every watcher reads again, for what it missed. Nothing
    /// to do on SQLite.
    pub async fn relay_change_notifications(&self, mut stop: watch::Receiver<bool>) {
        if self.db.get_database_backend() != DatabaseBackend::Postgres {
            return;
        }
        let pool = self
            .listener
            .as_ref()
            .unwrap_or(&self.db)
            .get_postgres_connection_pool()
            .clone();
        let retry = Duration::from_secs(1);
        loop {
            let listening = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sea_orm::sqlx::Error>(listener)
            };
            let listening = tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                listening = listening => listening,
            };
            let failure = match listening {
                Ok(mut listener) => {
                    // What committed before the listener was in place.
                    WAKES.send(Wake::All).ok();
                    tokio::select! {
                        _ = stop.wait_for(|stopped| *stopped) => return,
                        failure = relay(&mut listener) => failure,
                    }
                }
                Err(error) => error,
            };
            tracing::warn!(error = %failure, "change notifications: listening failed; retrying");
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = tokio::time::sleep(retry) => {}
            }
        }
    }
}

/// Forwards the listener's notifications to the watchers until it fails.
async fn relay(listener: &mut PgListener) -> sea_orm::sqlx::Error {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let wake = Uuid::try_parse(notification.payload()).map_or(Wake::All, Wake::Account);
                WAKES.send(wake).ok();
            }
            // The connection was lost, and made again: announcements in between are lost.
            Ok(None) => {
                WAKES.send(Wake::All).ok();
            }
            Err(error) => return error,
        }
    }
}
