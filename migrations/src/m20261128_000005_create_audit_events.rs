use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261128_000001_create_accounts_and_users::Accounts;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The audit trail: one row per change, written in the change's own transaction.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(pk_uuid(AuditEvents::Id))
                    .col(uuid(AuditEvents::AccountId))
                    .col(uuid_null(AuditEvents::ActorId))
                    .col(string_len(AuditEvents::Action, 32))
                    .col(uuid_null(AuditEvents::TargetUserId))
                    .col(uuid_null(AuditEvents::TargetTokenId))
                    .col(string_len(AuditEvents::RequestId, 128))
                    // The changed fields, before and after, as JSON; never a secret.
                    .col(text(AuditEvents::Changes))
                    .col(timestamp_with_time_zone(AuditEvents::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AuditEvents::Table, AuditEvents::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_events_account")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::AccountId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_events_account_target")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::AccountId)
                    .col(AuditEvents::TargetUserId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    AccountId,
    ActorId,
    Action,
    TargetUserId,
    TargetTokenId,
    RequestId,
    Changes,
    CreatedAt,
}
