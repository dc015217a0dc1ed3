use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each claim of outbox emails carries a lease id: the claimer renews its lease while it
/// sends, and marks an email sent or failed only while the lease is still its own. The time
/// of the last attempt is kept for the member's delivery state. A partial index finds the
/// rows of one lease among the waiting ones when it is renewed; emails already sent or
/// failed keep no lease. Another holds the failed emails, few among the sent ones, so that
/// ListUsers filtering on failed deliveries starts from them instead of walking every
/// member. Partial indexes are written the same way on SQLite and PostgreSQL.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(ColumnDef::new(Outbox::LeaseId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(
                        ColumnDef::new(Outbox::LastAttemptAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX ix_outbox_lease ON outbox (lease_id) \
             WHERE sent_at IS NULL AND dead_at IS NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX ix_outbox_failed ON outbox (invitation_id) \
             WHERE sent_at IS NULL AND dead_at IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for index in ["ix_outbox_failed", "ix_outbox_lease"] {
            manager
                .drop_index(Index::drop().name(index).table(Outbox::Table).to_owned())
                .await?;
        }
        for column in [Outbox::LastAttemptAt, Outbox::LeaseId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Outbox::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    LeaseId,
    LastAttemptAt,
}
