use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invite_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub caller_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    pub request_hash: String,
    pub account_id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
