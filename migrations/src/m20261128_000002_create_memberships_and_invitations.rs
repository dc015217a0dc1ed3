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
                    .table(Memberships::Table)
                    // UUIDv7: time-ordered, the key ListUsers pages by.
                    .col(pk_uuid(Memberships::Id))
                    .col(uuid(Memberships::AccountId))
                    .col(uuid(Memberships::UserId))
                    .col(integer(Memberships::Role))
                    .col(text(Memberships::CloudAccess))
                    .col(string_len(Memberships::Status, 16))
                    .col(uuid_null(Memberships::InvitedBy))
                    .col(timestamp_with_time_zone(Memberships::InvitedAt))
                    .col(timestamp_with_time_zone_null(
                        Memberships::InvitationExpiresAt,
                    ))
                    .col(timestamp_with_time_zone_null(Memberships::AcceptedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Memberships::Table, Memberships::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Memberships::Table, Memberships::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One membership per (account, user); a removed member's row is deleted, so they
        // may be invited again.
        create_index(
            manager,
            "ux_memberships_account_user",
            true,
            &[Memberships::AccountId, Memberships::UserId],
        )
        .await?;
        // The ListUsers keyset: every list query walks one account's range in id order.
        create_index(
            manager,
            "ix_memberships_account_id",
            false,
            &[Memberships::AccountId, Memberships::Id],
        )
        .await?;
        create_index(
            manager,
            "ix_memberships_account_status",
            false,
            &[Memberships::AccountId, Memberships::Status, Memberships::Id],
        )
        .await?;
        create_index(
            manager,
            "ix_memberships_account_role",
            false,
            &[Memberships::AccountId, Memberships::Role, Memberships::Id],
        )
        .await?;
        create_index(
            manager,
            "ix_memberships_user",
            false,
            &[Memberships::UserId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Invitations::Table)
                    .col(pk_uuid(Invitations::Id))
                    .col(uuid(Invitations::MembershipId))
                    // SHA-256 of the link's secret; the secret itself is never stored here.
                    .col(string_len(Invitations::SecretHash, 64))
                    .col(string_len(Invitations::Kind, 16))
                    .col(timestamp_with_time_zone(Invitations::CreatedAt))
                    .col(timestamp_with_time_zone(Invitations::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Invitations::ConsumedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Invitations::Table, Invitations::MembershipId)
                            .to(Memberships::Table, Memberships::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_invitations_secret_hash")
                    .table(Invitations::Table)
                    .col(Invitations::SecretHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_invitations_membership")
                    .table(Invitations::Table)
                    .col(Invitations::MembershipId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Invitations::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Memberships::Table).to_owned())
            .await
    }
}

async fn create_index(
    manager: &SchemaManager<'_>,
    name: &str,
    unique: bool,
    columns: &[Memberships],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(Memberships::Table);
    for column in columns {
        index.col(column.clone());
    }
    if unique {
        index.unique();
    }
    manager.create_index(index.to_owned()).await
}

#[derive(DeriveIden, Clone)]
pub enum Memberships {
    Table,
    Id,
    AccountId,
    UserId,
    Role,
    CloudAccess,
    Status,
    InvitedBy,
    InvitedAt,
    InvitationExpiresAt,
    AcceptedAt,
}

#[derive(DeriveIden)]
enum Invitations {
    Table,
    Id,
    MembershipId,
    SecretHash,
    Kind,
    CreatedAt,
    ExpiresAt,
    ConsumedAt,
}
