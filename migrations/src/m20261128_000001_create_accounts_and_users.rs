use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(pk_uuid(Accounts::Id))
                    .col(string_len(Accounts::Name, 255))
                    .col(timestamp_with_time_zone(Accounts::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    // Normalised (trimmed, lower-cased): the unique index below is the
                    // one-user-per-email rule.
                    .col(string_len(Users::Email, 254))
                    .col(string_len(Users::Name, 255))
                    // The name lower-cased in Unicode, so both engines search it alike.
                    .col(string_len(Users::NameLower, 1024))
                    .col(string_len(Users::Language, 2))
                    .col(text_null(Users::PasswordHash))
                    .col(boolean(Users::Activated))
                    .col(boolean(Users::TwoFactorEnabled))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_users_email")
                    .table(Users::Table)
                    .col(Users::Email)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Accounts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Accounts {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
pub enum Users {
    Table,
    Id,
    Email,
    Name,
    NameLower,
    Language,
    PasswordHash,
    Activated,
    TwoFactorEnabled,
    CreatedAt,
}
