use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// ListUsers' search finds a part of the email or the name (`LIKE '%text%'` on the
/// lower-cased columns), which no B-tree index serves. On PostgreSQL, trigram GIN indexes
/// (`pg_trgm`, an extension any database owner may create) do; without them every search
/// reads every user of every account. SQLite has no such index: there the search walks the
/// account's members.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX ix_users_email_trgm ON users USING gin (email gin_trgm_ops)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX ix_users_name_lower_trgm ON users USING gin (name_lower gin_trgm_ops)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS ix_users_email_trgm")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS ix_users_name_lower_trgm")
            .await?;
        Ok(())
    }
}
