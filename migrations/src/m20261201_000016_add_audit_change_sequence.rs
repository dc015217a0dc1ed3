use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261128_000001_create_accounts_and_users::Accounts;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// WatchChanges' cursor: each audit event gets a per-account sequence number, assigned in the
/// writing transaction from a counter row of the account that it holds until it commits, so
/// that an account's events commit in the order of their numbers. Existing events are
/// numbered in the order of their ids.
///
/// The counter has a table of its own: writes hold the account's row in share mode, and two
/// of them updating it would deadlock.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AccountChangeSequences::Table)
                    .col(pk_uuid(AccountChangeSequences::AccountId))
                    // The number of the account's last event.
                    .col(big_integer(AccountChangeSequences::LastSeq))
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                AccountChangeSequences::Table,
                                AccountChangeSequences::AccountId,
                            )
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .add_column(
                        ColumnDef::new(AuditEvents::Seq)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        // Both engines run UPDATE … FROM and window functions (SQLite since 3.33).
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE audit_events SET seq = numbered.n \
             FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY id) AS n \
                   FROM audit_events) AS numbered \
             WHERE audit_events.id = numbered.id",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO account_change_sequences (account_id, last_seq) \
             SELECT account_id, MAX(seq) FROM audit_events GROUP BY account_id",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_audit_events_account_seq")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::AccountId)
                    .col(AuditEvents::Seq)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ux_audit_events_account_seq")
                    .table(AuditEvents::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .drop_column(AuditEvents::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(AccountChangeSequences::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AccountChangeSequences {
    Table,
    AccountId,
    LastSeq,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    AccountId,
    Seq,
}
