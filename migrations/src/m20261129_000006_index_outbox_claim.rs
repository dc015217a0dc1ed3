use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The notifier's claim reads waiting emails in `(next_attempt_at, id)` order and stops
/// after a batch. A partial index holding only the waiting rows, in that order, lets it stop
/// there instead of sorting the whole backlog; it also answers "when is the next one due".
/// It replaces `ix_outbox_due`, which neither query could walk in order. Partial indexes
/// are written the same way on SQLite and PostgreSQL.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_outbox_due")
                    .table(Outbox::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ix_outbox_waiting ON outbox (next_attempt_at, id) \
                 WHERE sent_at IS NULL AND dead_at IS NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_outbox_waiting")
                    .table(Outbox::Table)
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
            .await
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    SentAt,
    DeadAt,
    NextAttemptAt,
}
