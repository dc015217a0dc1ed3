use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Audit events record the credential the actor acted with (`api_token:<id>`, `jwt:<jti>`,
/// `operator`, `invitation`) besides the user; events recorded before read as empty.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .add_column(
                        ColumnDef::new(AuditEvents::ActorCredential)
                            .string()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .drop_column(AuditEvents::ActorCredential)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    ActorCredential,
}
