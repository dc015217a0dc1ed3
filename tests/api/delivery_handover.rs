//! Handing emails over between replicas: only the holder of an email's current lease can
//! mark it, and the emails of a replica killed mid-send are sent by another within 30 s.

use std::{process::Stdio, time::Duration};

use chrono::{TimeDelta, Utc};
use sea_orm::{DatabaseBackend, EntityTrait};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::mpsc,
    time::Instant,
};
use usermgmt::{domain::InvitationEmail, grpc::pb, store::Store, store::entity};

use crate::delivery_relays::StallingRelay;
use crate::helpers::{TestApp, spawn_app_with};

async fn emails(app: &TestApp) -> Vec<entity::outbox::Model> {
    entity::outbox::Entity::find().all(&app.db).await.unwrap()
}

fn has_secret(row: &entity::outbox::Model) -> bool {
    serde_json::from_str::<InvitationEmail>(&row.payload).is_ok_and(|m| m.secret.is_some())
}

#[tokio::test]
async fn a_stale_lease_holder_cannot_mark_an_email_another_has_claimed() {
    let app = spawn_app_with(false).await;
    app.invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let store = Store::new(app.db.clone());
    let lease = TimeDelta::seconds(15);
    let now = app.clock_now();
    let stale = store.claim_emails(now, lease, 64).await.unwrap();
    assert_eq!(stale.len(), 1);
    let again = store.claim_emails(now, lease, 64).await.unwrap();
    assert!(again.is_empty(), "a leased email is not claimed twice");

    // The first holder stalls past its lease; another claims the email.
    let later = now + TimeDelta::seconds(16);
    let current = store.claim_emails(later, lease, 64).await.unwrap();
    assert_eq!(current.len(), 1);
    let (stale, current) = (&stale[0], &current[0]);
    assert_eq!(stale.id, current.id);
    assert_ne!(stale.lease_id, current.lease_id);

    assert!(!store.mark_sent(stale, later).await.unwrap());
    let retry_at = later + TimeDelta::minutes(1);
    assert!(
        !store
            .mark_retry(stale, "451 later", retry_at)
            .await
            .unwrap()
    );
    assert!(!store.mark_failed(stale, "550 no", later).await.unwrap());
    assert_eq!(
        store
            .renew_lease(stale.lease_id, later, lease)
            .await
            .unwrap(),
        0
    );
    let row = emails(&app).await.remove(0);
    assert_eq!(row.lease_id, Some(current.lease_id));
    assert_eq!(row.attempts, 2);
    assert_eq!(row.next_attempt_at, later + lease);
    assert!(row.sent_at.is_none() && row.dead_at.is_none() && row.last_error.is_none());
    assert!(has_secret(&row), "the stale holder erased nothing");

    assert_eq!(
        store
            .renew_lease(current.lease_id, later, lease)
            .await
            .unwrap(),
        1
    );
    assert!(store.mark_sent(current, later).await.unwrap());
    let row = emails(&app).await.remove(0);
    assert_eq!(row.sent_at, Some(later));
    assert_eq!(row.lease_id, None);
    assert!(!has_secret(&row));
    assert!(
        !store.mark_failed(current, "late", later).await.unwrap(),
        "a sent email stays sent"
    );
}

/// The service binary running as a replica of its own, killed when dropped.
struct Replica {
    child: Child,
    log: mpsc::UnboundedReceiver<String>,
}

impl Replica {
    /// `usermgmt serve` on the database, sending to the relay, with the default notifier
    /// settings (a 15 s lease, a 5 s poll).
    fn start(database_url: &str, smtp_url: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_usermgmt"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("USERMGMT_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .env("USERMGMT_DATABASE_URL", database_url)
            .env("USERMGMT_LISTEN_ADDR", "127.0.0.1:0")
            .env("USERMGMT_SMTP_URL", smtp_url)
            .env("USERMGMT_SMTP_TIMEOUT", "10m")
            .env("USERMGMT_MAIL_FROM", "Acme Cloud <no-reply@usermgmt.test>")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the usermgmt binary starts");
        let (lines, log) = mpsc::unbounded_channel();
        forward_lines(child.stdout.take(), lines.clone());
        forward_lines(child.stderr.take(), lines);
        Self { child, log }
    }

    /// Waits until a log line contains `text`.
    async fn wait_for_log(&mut self, text: &str) {
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = self.log.recv().await {
                if line.contains(text) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "the replica never logged {text:?}");
    }

    /// SIGKILL, and the exit reaped.
    async fn kill(mut self) {
        self.child.start_kill().expect("the replica can be killed");
        self.child.wait().await.expect("the replica exits");
    }
}

fn forward_lines(
    stream: Option<impl AsyncRead + Unpin + Send + 'static>,
    lines: mpsc::UnboundedSender<String>,
) {
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}

/// Polls `done` every 50 ms until it holds; fails the test at `deadline`.
async fn wait_until<F: Future<Output = bool>>(
    deadline: Instant,
    what: &str,
    mut done: impl FnMut() -> F,
) {
    while !done().await {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn the_emails_of_a_replica_killed_mid_send_are_sent_by_another_within_30_seconds() {
    const EMAILS: usize = 10;
    // Invitations made here, without a notifier, by the real clock's time: the replicas
    // read the system clock.
    let app = spawn_app_with(false).await;
    assert_eq!(
        app.db.get_database_backend(),
        DatabaseBackend::Postgres,
        "needs PostgreSQL: set USERMGMT_TEST_DATABASE_URL"
    );
    app.advance(Utc::now() - app.clock_now());
    let mut recipients = Vec::new();
    for i in 0..EMAILS {
        let email = format!("handover{i}@example.com");
        app.invite("Someone", &email, pb::Role::Users)
            .await
            .unwrap();
        recipients.push(email);
    }
    let database_url = app.database_url();

    // The first replica claims every email and hangs on a relay that never answers.
    let relay = StallingRelay::start().await;
    let mut first = Replica::start(&database_url, &relay.url());
    first.wait_for_log("notifier started").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (shared, stalling) = (&app, &relay);
    wait_until(deadline, "the claim of every email", move || async move {
        let rows = emails(shared).await;
        rows.len() == EMAILS && rows.iter().all(|row| row.lease_id.is_some())
    })
    .await;
    wait_until(deadline, "a connection to the relay", move || async move {
        stalling.accepted() > 0
    })
    .await;
    let claimed = emails(&app).await;
    // While it hangs, it keeps renewing its lease: the emails stay its own.
    let first_lease_end = claimed.iter().map(|row| row.next_attempt_at).max().unwrap();
    wait_until(
        Instant::now() + Duration::from_secs(10),
        "a renewal of the lease",
        move || async move {
            let rows = emails(shared).await;
            rows.iter().all(|row| row.next_attempt_at > first_lease_end)
        },
    )
    .await;
    let killed_at = Instant::now();
    first.kill().await;

    // A second replica, with a working relay, takes them over once the lease runs out.
    let mut second = Replica::start(&database_url, &app.mail.url());
    second.wait_for_log("notifier started").await;
    // Delivered, and recorded as sent: the relay has the message a moment before the
    // replica marks its row.
    wait_until(
        killed_at + Duration::from_secs(30),
        "delivery of every email",
        move || async move {
            shared.mail.mails().len() >= EMAILS
                && emails(shared).await.iter().all(|row| row.sent_at.is_some())
        },
    )
    .await;
    let handed_over_in = killed_at.elapsed();
    second.kill().await;

    let rows = emails(&app).await;
    for row in &rows {
        assert!(row.sent_at.is_some() && row.dead_at.is_none(), "{row:?}");
        assert_eq!(row.attempts, 2, "one claim by each replica: {row:?}");
        assert!(!has_secret(row));
        let first_lease = claimed.iter().find(|c| c.id == row.id).unwrap().lease_id;
        assert!(first_lease.is_some());
        assert_eq!(row.lease_id, None, "a sent email keeps no lease");
    }
    let mails = app.mail.mails();
    let mut message_ids: Vec<_> = mails.iter().map(|mail| mail.message_id.clone()).collect();
    message_ids.sort();
    message_ids.dedup();
    assert_eq!(message_ids.len(), EMAILS, "each email once");
    let mut to: Vec<_> = mails.iter().map(|mail| mail.to.clone()).collect();
    to.sort();
    recipients.sort();
    assert_eq!(to, recipients);
    eprintln!("handed over and delivered {handed_over_in:?} after the kill");
}
