use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The invitation quota counts an account's invitations and resends of the last window,
/// newest first: a partial index holds just those events, by account and time.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ix_audit_events_invitations ON audit_events (account_id, created_at) \
                 WHERE action IN ('user.invited', 'invitation.resent')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX ix_audit_events_invitations")
            .await?;
        Ok(())
    }
}
