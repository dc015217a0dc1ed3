//! The notifier: delivers the email outbox. It wakes at once when this process commits an
//! email and polls for emails other replicas committed; a failed send is retried with
//! exponential backoff and jitter, and after the last attempt the email is marked dead and
//! logged at error level — never dropped silently.

mod relay;
mod render;
mod transport;

pub use render::Templates;
pub use transport::Transport;

use std::{sync::Arc, time::Duration};

use chrono::TimeDelta;
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
use crate::domain::InvitationEmail;
use crate::metrics::Metrics;
use crate::store::{self, OutboxEmail, Store};

/// How long a claimed email is reserved for its sender before another replica may retry it.
pub const LEASE: TimeDelta = TimeDelta::minutes(2);
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
    Dead,
}

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub max_attempts: u32,
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
}

pub struct Notifier {
    store: Store,
    clock: SharedClock,
    transport: Transport,
    composer: Composer,
    retry: RetryPolicy,
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
                max_attempts: notifier.max_attempts,
            },
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

    /// Sends every due email, batch by batch.
    async fn drain(&self, stop: &watch::Receiver<bool>) -> Result<(), store::Error> {
        while !*stop.borrow() {
            let batch = self
                .store
                .claim_emails(self.clock.now(), LEASE, BATCH)
                .await?;
            if batch.is_empty() {
                break;
            }
            futures_util::stream::iter(batch)
                .for_each_concurrent(self.concurrency, |email| self.deliver(email))
                .await;
        }
        Ok(())
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
        let outcome = match &email.message {
            Ok(message) => match self.composer.compose(email.id, message) {
                Ok(message) => self.transport.send(email.id, message).await,
                Err(error) => Err(error),
            },
            Err(error) => Err(error.clone()),
        };
        match &outcome {
            Ok(()) => self.metrics.email_sent(),
            Err(_) => self.metrics.email_send_failed(),
        }
        let now = self.clock.now();
        let (recorded, outcome) = match outcome {
            Ok(()) => {
                tracing::info!("email sent");
                (self.store.mark_sent(&email, now).await, Outcome::Sent)
            }
            Err(error) if email.attempts >= self.retry.max_attempts => {
                tracing::error!(%error, "email is dead: no attempt left");
                let recorded = self.store.mark_failed(&email, &error, None, now).await;
                (recorded, Outcome::Dead)
            }
            Err(error) => {
                let delay = self.retry.delay(email.attempts.max(1));
                let retry_at = now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "email not sent; will retry");
                let recorded = self
                    .store
                    .mark_failed(&email, &error, Some(retry_at), now)
                    .await;
                (recorded, Outcome::WillRetry)
            }
        };
        match recorded {
            Ok(()) => {
                // Nobody listening is fine.
                let _ = self.deliveries.send(Delivery {
                    email_id: email.id,
                    outcome,
                });
            }
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
        let separator = if self.accept_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let link = format!("{}{separator}token={secret}", self.accept_url);
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
            max_attempts: 10,
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
}
