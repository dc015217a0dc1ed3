use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

use crate::m20261128_000001_create_accounts_and_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What an account wrote when it invited a member (R17): the name and language it gave,
/// and when the membership was made. Until the member accepts, this is all the account
/// sees of them, never the profile of a user who exists elsewhere. Existing memberships
/// take their user's name and language and their invitation time.
///
/// SQLite cannot make a column NOT NULL after adding it, nor add a NOT NULL column without
/// a default: there the columns carry a default that no row keeps (every row is
/// backfilled, every insert writes them).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let postgres = manager.get_database_backend() == DatabaseBackend::Postgres;
        for (name, kind, sqlite_default) in [
            (Memberships::InvitedName, ColumnType::Text, ""),
            (Memberships::InvitedNameLower, ColumnType::Text, ""),
            (Memberships::InvitedLanguage, ColumnType::Text, "en"),
            (
                Memberships::CreatedAt,
                ColumnType::TimestampWithTimeZone,
                "1970-01-01T00:00:00+00:00",
            ),
        ] {
            let mut column = ColumnDef::new_with_type(name, kind);
            if postgres {
                column.null();
            } else {
                column.not_null().default(sqlite_default);
            }
            manager
                .alter_table(
                    Table::alter()
                        .table(Memberships::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }

        let of_user = |value: Expr| {
            Query::select()
                .expr(value)
                .from(Users::Table)
                .and_where(
                    Expr::col((Users::Table, Users::Id))
                        .equals((Memberships::Table, Memberships::UserId)),
                )
                .to_owned()
        };
        manager
            .exec_stmt(
                Query::update()
                    .table(Memberships::Table)
                    .value(
                        Memberships::InvitedName,
                        of_user(Expr::col((Users::Table, Users::Name))),
                    )
                    .value(
                        Memberships::InvitedNameLower,
                        // As the service lower-cased it (SQLite's lower() knows ASCII only).
                        of_user(Expr::col((Users::Table, Users::NameLower))),
                    )
                    .value(
                        Memberships::InvitedLanguage,
                        of_user(Expr::col((Users::Table, Users::Language))),
                    )
                    .value(
                        Memberships::CreatedAt,
                        Expr::col((Memberships::Table, Memberships::InvitedAt)),
                    )
                    .to_owned(),
            )
            .await?;

        if !postgres {
            return Ok(());
        }
        for name in [
            Memberships::InvitedName,
            Memberships::InvitedNameLower,
            Memberships::InvitedLanguage,
            Memberships::CreatedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Memberships::Table)
                        .modify_column(ColumnDef::new(name).not_null())
                        .to_owned(),
                )
                .await?;
        }
        // Search finds a part of a pending member's invited name, as it does on users
        // (see the trigram indexes of `m20261129_000007`).
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ix_memberships_invited_name_lower_trgm ON memberships \
                 USING gin (invited_name_lower gin_trgm_ops)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP INDEX IF EXISTS ix_memberships_invited_name_lower_trgm")
                .await?;
        }
        for name in [
            Memberships::InvitedName,
            Memberships::InvitedNameLower,
            Memberships::InvitedLanguage,
            Memberships::CreatedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Memberships::Table)
                        .drop_column(name)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    UserId,
    InvitedAt,
    InvitedName,
    InvitedNameLower,
    InvitedLanguage,
    CreatedAt,
}
