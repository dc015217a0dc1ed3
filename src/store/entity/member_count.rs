use sea_orm::entity::prelude::*;

/// How many memberships of an account have this status, role and two-factor state; kept by
/// database triggers (see `migrations/…_create_member_counts.rs`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "member_counts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub status: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub role: i32,
    /// An accepted member whose user has two-factor authentication on.
    #[sea_orm(primary_key, auto_increment = false)]
    pub two_factor: bool,
    /// Spreads an account's counts over rows, for concurrent writers (PostgreSQL).
    #[sea_orm(primary_key, auto_increment = false)]
    pub slot: i16,
    pub members: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
