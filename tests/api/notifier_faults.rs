//! Faults of the mail path. Each test ends by checking that every committed invitation's
//! email was accepted by the mail server exactly once per Message-ID.

use std::collections::HashSet;

use chrono::TimeDelta;
use sea_orm::EntityTrait;
use usermgmt::{domain::InvitationEmail, grpc::pb, notifier::Outcome, store::entity};

use crate::delivery_relays::RelayGate;
use crate::helpers::{TestApp, smtp::MailServer, spawn_app, spawn_app_sending_to, spawn_app_with};

async fn invite_many(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut emails = Vec::new();
    for i in 0..n {
        let email = format!("{prefix}{i}@example.com");
        app.invite("Someone", &email, pb::Role::Users)
            .await
            .unwrap();
        emails.push(email);
    }
    emails
}

/// Every outbox email was sent, and the mail server holds each once: one per Message-ID,
/// and every Message-ID the one of its outbox row.
async fn assert_delivered_exactly_once(app: &TestApp, recipients: &[String]) {
    let rows = entity::outbox::Entity::find().all(&app.db).await.unwrap();
    let live: Vec<_> = rows.iter().filter(|row| row.dead_at.is_none()).collect();
    assert!(live.iter().all(|row| row.sent_at.is_some()), "{live:?}");
    let mails = app.mail.mails();
    let ids: HashSet<_> = mails.iter().map(|mail| mail.message_id.clone()).collect();
    assert_eq!(ids.len(), mails.len(), "a Message-ID arrived twice");
    let expected: HashSet<_> = live
        .iter()
        .map(|row| format!("{}@usermgmt.test", row.id))
        .collect();
    assert_eq!(ids, expected);
    let to: HashSet<_> = mails.iter().map(|mail| mail.to.clone()).collect();
    assert_eq!(to, recipients.iter().cloned().collect::<HashSet<_>>());
}

/// Moves the clock past any retry delay and wakes the notifier.
fn retry_now(app: &TestApp) {
    app.advance(TimeDelta::minutes(2));
    app.wake_notifier();
}

#[tokio::test]
async fn emails_wait_while_the_mail_server_is_down_and_go_out_once_it_is_back() {
    let app = spawn_app().await;
    app.mail.set_down(true);
    let recipients = invite_many(&app, "down", 3).await;
    app.wait_deliveries(3, Outcome::WillRetry).await;
    assert!(app.mail.mails().is_empty());
    assert!(app.mail.refused() >= 3);

    app.mail.set_down(false);
    retry_now(&app);
    app.wait_deliveries(3, Outcome::Sent).await;
    assert_delivered_exactly_once(&app, &recipients).await;
}

#[tokio::test]
async fn emails_the_mail_server_fails_are_retried_with_the_same_message_id() {
    let app = spawn_app().await;
    app.mail.fail_next(2);
    let recipients = invite_many(&app, "flaky", 5).await;
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes.push(app.next_delivery().await);
    }
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|d| d.outcome == Outcome::WillRetry)
        .collect();
    assert_eq!(failed.len(), 2, "{outcomes:?}");

    retry_now(&app);
    let retried = app.wait_deliveries(2, Outcome::Sent).await;
    let retried_ids: HashSet<_> = retried.iter().map(|d| d.email_id).collect();
    assert_eq!(retried_ids, failed.iter().map(|d| d.email_id).collect());
    assert_delivered_exactly_once(&app, &recipients).await;
}

#[tokio::test]
async fn emails_committed_before_a_stop_are_sent_after_the_restart() {
    let app = spawn_app_with(false).await;
    let recipients = invite_many(&app, "restart", 2).await;
    let app = app.restart(true).await;
    app.wait_deliveries(2, Outcome::Sent).await;
    assert_delivered_exactly_once(&app, &recipients).await;
}

#[tokio::test]
async fn a_relay_down_past_any_attempt_limit_delivers_every_email_once_it_is_back() {
    let mail = MailServer::start();
    let gate = RelayGate::closed(mail.addr).await;
    let app = spawn_app_sending_to(mail.reached_at(gate.url()), true).await;
    let recipients = invite_many(&app, "outage", 3).await;
    // Fifteen failed attempts each (the old limit gave up after twelve; these test settings
    // after five), over half an hour by the clock: the relay hangs up on every connection.
    const FAILED_ATTEMPTS: i32 = 15;
    for attempt in 1..=FAILED_ATTEMPTS {
        app.wait_deliveries(3, Outcome::WillRetry).await;
        if attempt < FAILED_ATTEMPTS {
            retry_now(&app);
        }
    }
    assert!(app.mail.mails().is_empty());
    assert!(
        gate.dropped() >= 3 * FAILED_ATTEMPTS as u32,
        "{}",
        gate.dropped()
    );
    let rows = entity::outbox::Entity::find().all(&app.db).await.unwrap();
    for row in &rows {
        assert_eq!(row.attempts, FAILED_ATTEMPTS, "{row:?}");
        assert!(row.dead_at.is_none() && row.sent_at.is_none(), "{row:?}");
        assert!(row.last_error.is_some(), "{row:?}");
        let message: InvitationEmail = serde_json::from_str(&row.payload).unwrap();
        assert!(message.secret.is_some(), "an unsent email keeps its link");
    }
    let listed = app
        .list(&app.admin_token, app.list_request())
        .await
        .unwrap();
    let pending: Vec<_> = listed
        .users
        .iter()
        .filter_map(|user| user.invitation_delivery.as_ref())
        .collect();
    assert_eq!(pending.len(), 3);
    for delivery in pending {
        assert_eq!(delivery.state(), pb::DeliveryState::Pending);
        assert_eq!(delivery.attempts, FAILED_ATTEMPTS);
        assert!(!delivery.last_error.is_empty());
        assert!(delivery.sent_time.is_none());
    }

    gate.open();
    retry_now(&app);
    app.wait_deliveries(3, Outcome::Sent).await;
    assert_delivered_exactly_once(&app, &recipients).await;
    let listed = app
        .list(&app.admin_token, app.list_request())
        .await
        .unwrap();
    for user in listed
        .users
        .iter()
        .filter(|user| user.email != "admin@acme.example")
    {
        let delivery = user.invitation_delivery.as_ref().expect("a delivery");
        assert_eq!(delivery.state(), pb::DeliveryState::Sent, "{user:?}");
        assert_eq!(delivery.attempts, FAILED_ATTEMPTS + 1);
        assert!(delivery.last_error.is_empty() && delivery.sent_time.is_some());
    }
}

#[tokio::test]
async fn a_resend_retires_the_unsent_email_of_the_old_link() {
    let app = spawn_app().await;
    app.mail.set_down(true);
    let user = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    app.wait_deliveries(1, Outcome::WillRetry).await;
    app.advance(TimeDelta::minutes(1));
    app.resend(&user.id).await.unwrap();
    app.mail.set_down(false);
    retry_now(&app);
    app.wait_deliveries(1, Outcome::Sent).await;

    let mails = app.mail.mails();
    assert_eq!(mails.len(), 1, "only the new link is sent");
    app.accept(&mails[0].token(), Some("12345678"))
        .await
        .unwrap();
    assert_delivered_exactly_once(&app, &["ada@example.com".to_string()]).await;
}

#[tokio::test]
async fn two_instances_on_one_database_drain_one_outbox_together() {
    let first = spawn_app().await;
    let second = first.sibling(true).await;
    let mut recipients = Vec::new();
    for i in 0..15 {
        for (app, name) in [(&first, "first"), (&second, "second")] {
            let email = format!("{name}{i}@example.com");
            app.invite("Someone", &email, pb::Role::Users)
                .await
                .unwrap();
            recipients.push(email);
        }
    }
    let mut sent = 0;
    while sent < recipients.len() {
        let delivery = tokio::select! {
            delivery = first.next_delivery() => delivery,
            delivery = second.next_delivery() => delivery,
        };
        if delivery.outcome == Outcome::Sent {
            sent += 1;
        }
    }
    assert_delivered_exactly_once(&first, &recipients).await;
    second.stop().await;
}
