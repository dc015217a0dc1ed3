use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261128_000001_create_accounts_and_users::{Accounts, Users};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(pk_uuid(ApiTokens::Id))
                    .col(uuid(ApiTokens::AccountId))
                    // The issuer stays referenced after their membership is removed (R13).
                    .col(uuid(ApiTokens::IssuerId))
                    .col(string_len(ApiTokens::Name, 255))
                    .col(text(ApiTokens::Description))
                    .col(integer(ApiTokens::Role))
                    // SHA-256 of the secret; the secret is shown once and never stored.
                    .col(string_len(ApiTokens::SecretHash, 64))
                    .col(timestamp_with_time_zone_null(ApiTokens::ExpiresAt))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::DeletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiTokens::Table, ApiTokens::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiTokens::Table, ApiTokens::IssuerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_api_tokens_secret_hash")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::SecretHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_api_tokens_account_issuer")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::AccountId)
                    .col(ApiTokens::IssuerId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(pk_uuid(Outbox::Id))
                    .col(string_len(Outbox::Kind, 32))
                    // The invitation the email carries the link of; a resend retires the
                    // older, unsent emails of the same membership.
                    .col(uuid_null(Outbox::InvitationId))
                    // What the notifier needs to render and send the email. It holds the
                    // invitation link until the email is sent, then the link is erased.
                    .col(text(Outbox::Payload))
                    .col(integer(Outbox::Attempts))
                    .col(timestamp_with_time_zone(Outbox::NextAttemptAt))
                    .col(text_null(Outbox::LastError))
                    .col(timestamp_with_time_zone(Outbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(Outbox::SentAt))
                    .col(timestamp_with_time_zone_null(Outbox::DeadAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_due")
                    .table(Outbox::Table)
                    .col(Outbox::SentAt)
                    .col(Outbox::DeadAt)
                    .col(Outbox::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_invitation")
                    .table(Outbox::Table)
                    .col(Outbox::InvitationId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ApiTokens::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    AccountId,
    IssuerId,
    Name,
    Description,
    Role,
    SecretHash,
    ExpiresAt,
    CreatedAt,
    LastUsedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Kind,
    InvitationId,
    Payload,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
    SentAt,
    DeadAt,
}
