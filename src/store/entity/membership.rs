use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "memberships")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub user_id: Uuid,
    /// The provider's role id (see `domain::Role`).
    pub role: i32,
    /// `domain::CloudAccess` as JSON.
    pub cloud_access: String,
    /// `invited` or `active`; "expired" is computed from `invitation_expires_at`.
    pub status: String,
    pub invited_by: Option<Uuid>,
    pub invited_at: DateTimeUtc,
    pub invitation_expires_at: Option<DateTimeUtc>,
    pub accepted_at: Option<DateTimeUtc>,
    /// The name the account gave in the invitation: all it sees of a pending member (R17).
    pub invited_name: String,
    /// `invited_name` lower-cased, for search.
    pub invited_name_lower: String,
    /// The language code the account gave in the invitation.
    pub invited_language: String,
    /// When the membership was made.
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
