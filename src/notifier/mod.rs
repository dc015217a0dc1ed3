//! The notifier: delivers the email outbox. It wakes at once when this process commits an
//! email and polls for emails other replicas committed. A transient failure (no connection,
//! a timeout, a 4xx reply) is retried with capped exponential backoff and jitter for as
//! long as the email's link works; a permanent refusal (5xx) fails the email at once, and
//! so does a link that stopped working (accepted, expired, replaced by a resend, membership
//! removed) — it is never sent. Failed emails are kept, with the reason, never dropped.
//!
//! A claim leases its batch for a short time and renews the lease while the batch is sent,
//! so a replica that dies hands its emails over within one lease; an outcome is recorded
//! only while the lease is still this replica's.

mod relay;
mod render;
mod transport;

pub use relay::SendError;
pub use render::Templates;
pub use transport::Transport;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use lettre::{
    Message,
    message::{Mailbox, MultiPart},
};
use rand::Rng;
use secrecy::ExposeSecret;
use tokio::sync::{Notify, broadcast, watch};
use tracing::Instrument;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::config::{MailSettings, NotifierSettings};
use crate::domain::{InvitationEmail, invitation::accept_link};
use crate::metrics::Metrics;
use crate::store::{self, OutboxEmail, Store};

/// How many emails one claim takes.
pub const BATCH: u64 = 64;

/// What became of one attempt to send an email, once recorded in the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub email_id: Uuid,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    WillRetry,
    /// Failed for good: refused permanently, or its link no longer works.
    Dead,
}

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay before the next attempt after `attempts` failures: doubling from `initial`
    /// up to `max`, then a random part of its upper half so that retries spread out.
    pub fn delay(&self, attempts: u32) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)));
        let capped = doubled.min(self.max);
        capped.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// When to try again after `attempts` failures at `now`: after the delay, but no later
    /// than when the link expires, so that an expired email is given up on time.
    pub fn retry_at(
        &self,
        attempts: u32,
        now: DateTime<Utc>,
        link_expires_at: Option<DateTime<Utc>>,
    ) -> DateTime<Utc> {
        let delay = TimeDelta::from_std(self.delay(attempts.max(1))).unwrap_or(TimeDelta::MAX);
        let after_delay = now
            .checked_add_signed(delay)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        match link_expires_at {
            Some(expires_at) => after_delay.min(expires_at.max(now)),
            None => after_delay,
        }
    }
}

pub struct Notifier {
    store: Store,
    clock: SharedClock,
    transport: Transport,
    composer: Composer,
    retry: RetryPolicy,
    lease: Duration,
    poll_interval: Duration,
    concurrency: usize,
    wake: Arc<Notify>,
    deliveries: broadcast::Sender<Delivery>,
    metrics: Metrics,
}

impl Notifier {
    /// Counts sends and failures in `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    pub fn from_settings(
        mail: &MailSettings,
        notifier: &NotifierSettings,
        store: Store,
        clock: SharedClock,
        wake: Arc<Notify>,
        deliveries: broadcast::Sender<Delivery>,
    ) -> Result<Self, String> {
        let transport = match &mail.smtp_url {
            Some(url) => Transport::smtp(
                url.expose_secret(),
                mail.smtp_pool_size,
                mail.smtp_timeout,
                mail.smtp_ca_file.as_deref(),
            )?,
            None => Transport::files(&mail.dir)?,
        };
        Ok(Self {
            store,
            clock,
            transport,
            composer: Composer::new(&mail.from, &mail.accept_url)?,
            retry: RetryPolicy {
                initial: notifier.retry_initial,
                max: notifier.retry_max,
            },
            lease: notifier.lease,
            poll_interval: notifier.poll_interval,
            concurrency: mail.smtp_pool_size as usize,
            wake,
            deliveries,
            metrics: Metrics::default(),
        })
    }

    /// Delivers until `stop` turns true; a send in progress finishes first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!("notifier started");
        while !*stop.borrow() {
            if let Err(error) = self.drain(&stop).await {
                tracing::error!(%error, "notifier cannot read the outbox");
            }
            let pause = self.pause().await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!("notifier stopped");
    }

    fn lease_delta(&self) -> TimeDelta {
        TimeDelta::from_std(self.lease).unwrap_or(TimeDelta::MAX)
    }

    /// Sends every due email, batch by batch.
    async fn drain(&self, stop: &watch::Receiver<bool>) -> Result<(), store::Error> {
        while !*stop.borrow() {
            let batch = self
                .store
                .claim_emails(self.clock.now(), self.lease_delta(), BATCH)
                .await?;
            let Some(lease_id) = batch.first().map(|email| email.lease_id) else {
                break;
            };
            let sends = futures_util::stream::iter(batch)
                .for_each_concurrent(self.concurrency, |email| self.deliver(email));
            self.holding_lease(lease_id, sends).await;
        }
        Ok(())
    }

    /// Runs `work`, renewing the lease every third of its length until it is done.
    async fn holding_lease(&self, lease_id: Uuid, work: impl Future<Output = ()>) {
        let mut work = std::pin::pin!(work);
        let every = (self.lease / 3).max(Duration::from_millis(10));
        loop {
            tokio::select! {
                () = &mut work => return,
                () = tokio::time::sleep(every) => {
                    let renewed = self
                        .store
                        .renew_lease(lease_id, self.clock.now(), self.lease_delta())
                        .await;
                    if let Err(error) = renewed {
                        tracing::warn!(%error, "cannot renew the lease of the emails being sent");
                    }
                }
            }
        }
    }

    /// Until the next waiting email falls due, at most the poll interval.
    async fn pause(&self) -> Duration {
        match self.store.next_email_due_at().await {
            Ok(Some(due)) => (due - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.poll_interval),
            _ => self.poll_interval,
        }
    }

    async fn deliver(&self, email: OutboxEmail) {
        let span = tracing::info_span!("deliver", otel.name = "send email", email_id = %email.id, attempt = email.attempts);
        // The send joins the trace of the call that queued the email.
        crate::telemetry::continue_trace(&span, email.trace_context.as_deref());
        self.send(email).instrument(span).await;
    }

    async fn send(&self, email: OutboxEmail) {
        // An email whose lease ran out is left to whoever holds it now (or to the next
        // claim): sending it could send it twice.
        match self.store.holds_lease(&email, self.clock.now()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(lease_id = %email.lease_id, "the lease ran out before the send; not sent");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot check the lease before the send; not sent");
                return;
            }
        }
        // A link that stopped working is never sent.
        if self.given_up_for_its_link(&email).await {
            return;
        }
        let outcome = match &email.message {
            Ok(message) => match self.composer.compose(email.id, message) {
                Ok(message) => self.transport.send(email.id, message).await,
                Err(error) => Err(SendError::permanent(error)),
            },
            Err(error) => Err(SendError::permanent(error.clone())),
        };
        if outcome.is_err() {
            self.metrics.email_send_failed();
        }
        let now = self.clock.now();
        let (recorded, outcome) = match outcome {
            Ok(()) => {
                tracing::info!("email sent");
                let recorded = self.store.mark_sent(&email, now).await;
                if matches!(recorded, Ok(true)) {
                    self.metrics.email_sent();
                }
                (recorded, Outcome::Sent)
            }
            Err(error) if error.permanent => {
                tracing::warn!(%error, "email refused for good; not retried");
                let recorded = self.store.mark_failed(&email, &error.message, now).await;
                (recorded, Outcome::Dead)
            }
            Err(error) => {
                if self.given_up_for_its_link(&email).await {
                    return;
                }
                let expires_at = email.message.as_ref().ok().map(|m| m.expires_at);
                let retry_at = self.retry.retry_at(email.attempts, now, expires_at);
                tracing::warn!(
                    %error,
                    retry_in_ms = (retry_at - now).num_milliseconds(),
                    "email not sent; will retry"
                );
                let recorded = self
                    .store
                    .mark_retry(&email, &error.message, retry_at)
                    .await;
                (recorded, Outcome::WillRetry)
            }
        };
        self.record(&email, recorded, outcome);
    }

    /// Whether the email's link no longer works; if so it is marked failed with the reason.
    async fn given_up_for_its_link(&self, email: &OutboxEmail) -> bool {
        let now = self.clock.now();
        match self.store.link_gone(email, now).await {
            Ok(None) => false,
            Ok(Some(gone)) => {
                tracing::info!(
                    reason = gone.reason(),
                    "email not sent: its link no longer works"
                );
                let recorded = self.store.mark_failed(email, gone.reason(), now).await;
                self.record(email, recorded, Outcome::Dead);
                true
            }
            // The send goes ahead: the link was live when the email was claimed.
            Err(error) => {
                tracing::warn!(%error, "cannot check the email's link");
                false
            }
        }
    }

    fn record(&self, email: &OutboxEmail, recorded: Result<bool, store::Error>, outcome: Outcome) {
        match recorded {
            Ok(true) => {
                // Nobody listening is fine.
                let _ = self.deliveries.send(Delivery {
                    email_id: email.id,
                    outcome,
                });
            }
            // This lease ran out and another replica took the email over, or a resend or a
            // removal gave it up meanwhile: that stands, and this outcome changes nothing.
            Ok(false) => tracing::warn!(
                lease_id = %email.lease_id,
                ?outcome,
                "the email is no longer held under this lease; this outcome is not recorded"
            ),
            // The lease runs out and the email is tried again, with the same Message-ID.
            Err(error) => tracing::error!(%error, "cannot record the outcome of a send"),
        }
    }
}

/// Turns an outbox row's payload into the email: the templates in the invitee's language,
/// the accept link, and a Message-ID derived from the row.
pub struct Composer {
    templates: Templates,
    from: Mailbox,
    message_id_domain: String,
    accept_url: String,
}

impl Composer {
    /// `mail_from` is the sender's mailbox (`Name <address>`); `accept_url` the page that
    /// receives `?token=<secret>`.
    pub fn new(mail_from: &str, accept_url: &str) -> Result<Self, String> {
        let from: Mailbox = mail_from
            .parse()
            .map_err(|e| format!("USERMGMT_MAIL_FROM is not a mailbox: {e}"))?;
        Ok(Self {
            templates: Templates::load().map_err(|e| format!("email templates: {e}"))?,
            message_id_domain: from.email.domain().to_string(),
            from,
            accept_url: accept_url.to_string(),
        })
    }

    /// Builds the message of outbox row `id`. Its Message-ID is derived from the row, so a
    /// retried or duplicated email is recognisably the same message.
    pub fn compose(&self, id: Uuid, invitation: &InvitationEmail) -> Result<Message, String> {
        let secret = invitation
            .secret
            .as_deref()
            .ok_or("the outbox row has no link secret")?;
        let link = accept_link(&self.accept_url, secret);
        let rendered = self.templates.render(invitation, &link)?;
        let to = Mailbox::new(
            Some(invitation.invitee_name.clone()),
            invitation
                .to
                .parse()
                .map_err(|e| format!("bad recipient address: {e}"))?,
        );
        Message::builder()
            .message_id(Some(format!("<{id}@{}>", self.message_id_domain)))
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .map_err(|e| format!("cannot build the email: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        for _ in 0..100 {
            let first = policy.delay(1);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2));
            let third = policy.delay(3);
            assert!(third >= Duration::from_secs(4) && third <= Duration::from_secs(8));
            let late = policy.delay(30);
            assert!(late >= Duration::from_secs(30) && late <= Duration::from_secs(60));
        }
    }

    #[test]
    fn a_retry_is_due_no_later_than_the_link_expires() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(600),
        };
        let now: DateTime<Utc> = "2026-11-30T12:00:00Z".parse().unwrap();
        let soon = now + TimeDelta::seconds(10);
        assert_eq!(policy.retry_at(5, now, Some(soon)), soon);
        let later = policy.retry_at(1, now, Some(now + TimeDelta::hours(1)));
        assert!(later >= now + TimeDelta::seconds(30) && later <= now + TimeDelta::seconds(60));
        assert_eq!(
            policy.retry_at(1, now, Some(now - TimeDelta::seconds(1))),
            now
        );
        let unbounded = policy.retry_at(u32::MAX, now, None);
        assert!(unbounded <= now + TimeDelta::seconds(600));
    }
}
