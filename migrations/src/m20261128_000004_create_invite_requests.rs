use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The `request_id`s of InviteUser calls (AIP-155): a retried call finds its first answer.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InviteRequests::Table)
                    .col(uuid(InviteRequests::CallerId))
                    .col(string_len(InviteRequests::RequestId, 128))
                    // SHA-256 of the request's fields: the same id with another request is refused.
                    .col(string_len(InviteRequests::RequestHash, 64))
                    .col(uuid(InviteRequests::AccountId))
                    .col(uuid(InviteRequests::UserId))
                    .col(timestamp_with_time_zone(InviteRequests::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(InviteRequests::CallerId)
                            .col(InviteRequests::RequestId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(InviteRequests::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum InviteRequests {
    Table,
    CallerId,
    RequestId,
    RequestHash,
    AccountId,
    UserId,
    CreatedAt,
}
