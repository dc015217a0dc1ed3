//! WatchChanges: an account's audit events as they commit, for services that keep a copy
//! of who may do what (a cache of roles) and drop entries as changes arrive.
//!
//! A stream first sends the events after the client's cursor, then each new event as it
//! commits on any replica, in the order of the account's sequence (its commit order). The
//! cursor of the last event a client saw resumes the stream with nothing missed and nothing
//! repeated. A quiet stream sends a heartbeat (no event, the cursor unchanged) every
//! heartbeat interval. The watcher's role is checked again before events are delivered and
//! at each heartbeat: a stream of a caller no longer an administrator ends with the code the
//! call would be refused with now. At shutdown streams end with UNAVAILABLE.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures_util::stream::{self, BoxStream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use uuid::Uuid;

use super::{Caller, Error, UserService};
use crate::domain::{AuditEvent, administrators::check_administrator};
use crate::store::{Change, ChangeWakes};

/// Events read from the database at once.
const BATCH: u64 = 100;

/// What WatchChanges needs to know about streams: how often to beat, and when to stop.
#[derive(Clone)]
pub(super) struct Streams {
    heartbeat: Duration,
    stopping: Arc<watch::Sender<bool>>,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(30),
            stopping: Arc::new(watch::Sender::new(false)),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WatchQuery {
    pub account_id: Uuid,
    /// The cursor of the last change the client saw; empty: only changes from now on.
    pub start_after: String,
}

/// One message of the stream: a change, or a heartbeat (no event).
#[derive(Clone, Debug, PartialEq)]
pub struct Watched {
    pub cursor: String,
    pub event: Option<AuditEvent>,
}

/// Cursors: the number of a change in its account's sequence, tied to the account, so that
/// a cursor of another account is refused rather than silently skipping changes.
fn fingerprint(account_id: Uuid) -> String {
    hex::encode(&Sha256::digest(format!("changes|{account_id}").as_bytes())[..8])
}

fn encode_cursor(account_id: Uuid, seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{seq}.{}", fingerprint(account_id)))
}

fn decode_cursor(account_id: Uuid, cursor: &str) -> Result<Option<i64>, Error> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("start_after", "is not a cursor of this account's changes");
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let (seq, seen) = raw.split_once('.').ok_or_else(invalid)?;
    if seen != fingerprint(account_id) {
        return Err(invalid());
    }
    match seq.parse::<i64>() {
        Ok(seq) if seq >= 0 => Ok(Some(seq)),
        _ => Err(invalid()),
    }
}

impl UserService {
    /// Sets how often quiet WatchChanges streams beat.
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.streams.heartbeat = interval;
        self
    }

    /// Ends every WatchChanges stream, now and from now on, with UNAVAILABLE: the server is
    /// shutting down and its clients reconnect elsewhere.
    pub fn stop_streams(&self) {
        self.streams.stopping.send_replace(true);
    }

    /// The account's changes after the query's cursor, then as they commit; administrators
    /// only. A refusal before the first message is the call's status; a later one ends the
    /// stream.
    #[tracing::instrument(skip_all, fields(account_id = %query.account_id), err(level = "info"))]
    pub async fn watch_changes(
        &self,
        caller: &Caller,
        query: WatchQuery,
    ) -> Result<BoxStream<'static, Result<Watched, Error>>, Error> {
        let account_id = query.account_id;
        let start_after = decode_cursor(account_id, &query.start_after)?;
        let mut stopping = self.streams.stopping.subscribe();
        if *stopping.borrow_and_update() {
            return Err(Error::ShuttingDown);
        }
        let watcher = Watcher {
            service: self.clone(),
            caller: caller.clone(),
            account_id,
            cursor: 0,
            pending: VecDeque::new(),
            // Before the first read: a change committed after it wakes the stream.
            wakes: self.store.change_wakes(account_id),
            stopping,
            read_due: true,
            ended: false,
        };
        watcher.check_role().await?;
        let last = self.store.last_change(account_id).await?;
        let cursor = match start_after {
            Some(seq) if seq > last => {
                return Err(Error::invalid(
                    "start_after",
                    "is not a cursor of this account's changes",
                ));
            }
            Some(seq) => seq,
            None => last,
        };
        let watcher = Watcher { cursor, ..watcher };
        Ok(stream::unfold(watcher, |mut watcher| async move {
            let next = watcher.next().await?;
            Some((next, watcher))
        })
        .boxed())
    }
}

/// One stream's state.
struct Watcher {
    service: UserService,
    caller: Caller,
    account_id: Uuid,
    /// The number of the last change sent (or the start).
    cursor: i64,
    /// Changes read and not yet sent.
    pending: VecDeque<Change>,
    wakes: ChangeWakes,
    stopping: watch::Receiver<bool>,
    /// Whether changes may have committed since the last read.
    read_due: bool,
    ended: bool,
}

impl Watcher {
    /// The caller must still be an administrator of the account, with a live credential.
    async fn check_role(&self) -> Result<(), Error> {
        let actor = self.service.actor(&self.caller);
        let role = self
            .service
            .store
            .watcher_role(self.account_id, &actor)
            .await?;
        check_administrator(role, "watch the account's changes")?;
        Ok(())
    }

    /// Reads what committed after the cursor; whether there was anything. The caller's role
    /// is checked again before changes are handed out.
    async fn read(&mut self) -> Result<bool, Error> {
        let after = self.pending.back().map_or(self.cursor, |change| change.seq);
        let changes = self
            .service
            .store
            .changes_after(self.account_id, after, BATCH)
            .await?;
        if changes.is_empty() {
            return Ok(false);
        }
        // A full batch: more may follow at once.
        self.read_due = changes.len() as u64 == BATCH;
        self.check_role().await?;
        self.pending.extend(changes);
        Ok(true)
    }

    fn watched(&self, event: Option<AuditEvent>) -> Watched {
        Watched {
            cursor: encode_cursor(self.account_id, self.cursor),
            event,
        }
    }

    /// The next message, or the error that ends the stream; `None` once ended.
    async fn next(&mut self) -> Option<Result<Watched, Error>> {
        if self.ended {
            return None;
        }
        let next = self.step().await;
        self.ended = next.is_err();
        Some(next)
    }

    async fn step(&mut self) -> Result<Watched, Error> {
        loop {
            if *self.stopping.borrow_and_update() {
                return Err(Error::ShuttingDown);
            }
            if let Some(change) = self.pending.pop_front() {
                self.cursor = change.seq;
                return Ok(self.watched(Some(change.event)));
            }
            if self.read_due {
                self.read_due = false;
                if self.read().await? {
                    continue;
                }
            }
            let heartbeat = self.service.streams.heartbeat;
            tokio::select! {
                _ = self.stopping.changed() => {}
                () = self.wakes.changed() => self.read_due = true,
                () = tokio::time::sleep(heartbeat) => {
                    // Also for what other processes on a SQLite file committed, and what
                    // a lost notification did not announce.
                    if !self.read().await? {
                        self.check_role().await?;
                        return Ok(self.watched(None));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_in_its_account_only() {
        let account = Uuid::new_v4();
        let cursor = encode_cursor(account, 42);
        assert_eq!(decode_cursor(account, &cursor).unwrap(), Some(42));
        assert_eq!(decode_cursor(account, "").unwrap(), None);
        assert!(decode_cursor(Uuid::new_v4(), &cursor).is_err());
        for bad in ["x", "!!", &URL_SAFE_NO_PAD.encode("-1.abc"), "MTI"] {
            assert!(decode_cursor(account, bad).is_err(), "{bad:?}");
        }
        let negative = URL_SAFE_NO_PAD.encode(format!("-1.{}", fingerprint(account)));
        assert!(decode_cursor(account, &negative).is_err());
    }
}
