use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub actor_id: Option<Uuid>,
    /// The credential the actor acted with (`domain::Acting::audit_name`).
    pub actor_credential: String,
    pub action: String,
    pub target_user_id: Option<Uuid>,
    pub target_token_id: Option<Uuid>,
    pub request_id: String,
    /// `[{"field":…,"before":…,"after":…}]`.
    pub changes: String,
    pub created_at: DateTimeUtc,
    /// How an invitation's link went out: `email` or `caller` (`domain::LinkDelivery`).
    pub link_delivery: Option<String>,
    /// The event's place in its account's change stream: 1, 2, … in commit order.
    pub seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
