use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub kind: String,
    pub invitation_id: Option<Uuid>,
    /// JSON; holds the invitation link's secret until the email is sent.
    pub payload: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    /// When the email was given up on (failed for good); `last_error` says why.
    pub dead_at: Option<DateTimeUtc>,
    /// The lease of the claim that holds the email; `None` while it waits, and once it
    /// was sent or failed.
    pub lease_id: Option<Uuid>,
    /// When the email was last claimed for an attempt.
    pub last_attempt_at: Option<DateTimeUtc>,
    /// The queuing call's W3C trace context, as JSON; none without tracing.
    pub trace_context: Option<String>,
}

// Written by hand: the payload may hold a secret and must never reach a log.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxEmail")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
