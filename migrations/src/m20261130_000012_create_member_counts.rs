use sea_orm_migration::{prelude::*, schema::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// ListUsers' `total_size` without counting the account: per account, status, role and
/// two-factor state, how many memberships there are. Database triggers keep the counts in
/// step with every change of `memberships` (and of a user's two-factor state), so rows
/// written by plain SQL count too; the migration counts the rows already there.
///
/// `two_factor` is what the two-factor filter sees: an accepted member whose user has it
/// on. On PostgreSQL an account's counts are spread over 16 `slot`s by the membership id,
/// so that concurrent invitations to one account seldom wait for the same counter row;
/// SQLite has one writer and one slot. The counts live in a table of their own, not on
/// the account's row, which writes lock `FOR SHARE`. Rows of deleted accounts stay, at 0.
///
/// Also an index on pending members' expiry, which splits pending into INVITED and EXPIRED
/// without reading all of them.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MemberCounts::Table)
                    .col(uuid(MemberCounts::AccountId))
                    .col(string_len(MemberCounts::Status, 16))
                    .col(integer(MemberCounts::Role))
                    .col(boolean(MemberCounts::TwoFactor))
                    .col(small_integer(MemberCounts::Slot))
                    .col(big_integer(MemberCounts::Members))
                    .primary_key(
                        Index::create()
                            .col(MemberCounts::AccountId)
                            .col(MemberCounts::Status)
                            .col(MemberCounts::Role)
                            .col(MemberCounts::TwoFactor)
                            .col(MemberCounts::Slot),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_memberships_account_status_expiry")
                    .table(Memberships::Table)
                    .col(Memberships::AccountId)
                    .col(Memberships::Status)
                    .col(Memberships::InvitationExpiresAt)
                    .to_owned(),
            )
            .await?;
        let statements = match manager.get_database_backend() {
            DatabaseBackend::Postgres => postgres::up(),
            _ => sqlite::up(),
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            DatabaseBackend::Postgres => postgres::DOWN,
            _ => sqlite::DOWN,
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(statement).await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("ix_memberships_account_status_expiry")
                    .table(Memberships::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(MemberCounts::Table).to_owned())
            .await
    }
}

const KEY: &str = "account_id, status, role, two_factor, slot";

mod postgres {
    use super::KEY;

    /// The slot of a membership: 4 random bits of its UUIDv7.
    const SLOT: &str = "(get_byte(uuid_send(m.id), 15) & 15)::smallint";

    /// Adds `deltas` (a query of KEY and `delta`) to the counts in one statement, locking
    /// the counter rows in key order so that two statements never wait for each other.
    fn add(deltas: &str) -> String {
        format!(
            "INSERT INTO member_counts AS c ({KEY}, members) \
             SELECT {KEY}, sum(delta) FROM ({deltas}) AS d \
             GROUP BY {KEY} HAVING sum(delta) <> 0 ORDER BY {KEY} \
             ON CONFLICT ({KEY}) DO UPDATE SET members = c.members + excluded.members"
        )
    }

    /// The key of each membership of `rows`, and `delta`.
    fn keyed(rows: &str, delta: i32) -> String {
        format!(
            "SELECT m.account_id, m.status, m.role, \
             m.status = 'active' AND coalesce(u.two_factor_enabled, false) AS two_factor, \
             {SLOT} AS slot, {delta} AS delta \
             FROM {rows} AS m LEFT JOIN users AS u ON u.id = m.user_id"
        )
    }

    /// A trigger function; `returns` is NULL for AFTER triggers, OLD for a BEFORE DELETE
    /// trigger that lets the row go.
    fn function(name: &str, body: &str, returns: &str) -> String {
        format!(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN {body}; RETURN {returns}; END $$"
        )
    }

    /// A user's active memberships, as counted with two-factor `from`, counted with `to`.
    fn move_two_factor(from: &str, to: &str) -> String {
        add(&format!(
            "SELECT m.account_id, m.status, m.role, t.two_factor, {SLOT} AS slot, t.delta \
             FROM memberships AS m \
             CROSS JOIN (VALUES ({from}, -1), ({to}, 1)) AS t (two_factor, delta) \
             WHERE m.user_id = OLD.id AND m.status = 'active'"
        ))
    }

    pub fn up() -> Vec<String> {
        vec![
            function(
                "member_counts_insert",
                &add(&keyed("inserted_memberships", 1)),
                "NULL",
            ),
            function(
                "member_counts_delete",
                &add(&keyed("deleted_memberships", -1)),
                "NULL",
            ),
            function(
                "member_counts_update",
                &add(&format!(
                    "{} UNION ALL {}",
                    keyed("memberships_before", -1),
                    keyed("memberships_after", 1)
                )),
                "NULL",
            ),
            "CREATE TRIGGER member_counts_insert AFTER INSERT ON memberships \
             REFERENCING NEW TABLE AS inserted_memberships \
             FOR EACH STATEMENT EXECUTE FUNCTION member_counts_insert()"
                .into(),
            "CREATE TRIGGER member_counts_delete AFTER DELETE ON memberships \
             REFERENCING OLD TABLE AS deleted_memberships \
             FOR EACH STATEMENT EXECUTE FUNCTION member_counts_delete()"
                .into(),
            "CREATE TRIGGER member_counts_update AFTER UPDATE ON memberships \
             REFERENCING OLD TABLE AS memberships_before NEW TABLE AS memberships_after \
             FOR EACH STATEMENT EXECUTE FUNCTION member_counts_update()"
                .into(),
            function(
                "member_counts_two_factor",
                &move_two_factor("OLD.two_factor_enabled", "NEW.two_factor_enabled"),
                "NULL",
            ),
            "CREATE TRIGGER member_counts_two_factor \
             AFTER UPDATE OF two_factor_enabled ON users FOR EACH ROW \
             WHEN (OLD.two_factor_enabled IS DISTINCT FROM NEW.two_factor_enabled) \
             EXECUTE FUNCTION member_counts_two_factor()"
                .into(),
            // The memberships of a deleted user go with it (ON DELETE CASCADE), after its
            // row: they are counted as without two-factor first, as they then read.
            function(
                "member_counts_user_deleted",
                &move_two_factor("true", "false"),
                "OLD",
            ),
            "CREATE TRIGGER member_counts_user_deleted BEFORE DELETE ON users FOR EACH ROW \
             WHEN (OLD.two_factor_enabled) EXECUTE FUNCTION member_counts_user_deleted()"
                .into(),
            add(&keyed("memberships", 1)),
        ]
    }

    pub const DOWN: &[&str] = &[
        "DROP TRIGGER member_counts_user_deleted ON users",
        "DROP TRIGGER member_counts_two_factor ON users",
        "DROP TRIGGER member_counts_update ON memberships",
        "DROP TRIGGER member_counts_delete ON memberships",
        "DROP TRIGGER member_counts_insert ON memberships",
        "DROP FUNCTION member_counts_user_deleted()",
        "DROP FUNCTION member_counts_two_factor()",
        "DROP FUNCTION member_counts_update()",
        "DROP FUNCTION member_counts_delete()",
        "DROP FUNCTION member_counts_insert()",
    ];
}

mod sqlite {
    use super::KEY;

    /// The key of the membership `row` (NEW or OLD).
    fn key_of(row: &str) -> String {
        format!(
            "{row}.account_id, {row}.status, {row}.role, \
             {row}.status = 'active' AND coalesce(\
             (SELECT two_factor_enabled FROM users WHERE id = {row}.user_id), 0), 0"
        )
    }

    fn increment(row: &str) -> String {
        format!(
            "INSERT INTO member_counts ({KEY}, members) VALUES ({}, 1) \
             ON CONFLICT ({KEY}) DO UPDATE SET members = members + 1;",
            key_of(row)
        )
    }

    fn decrement(row: &str) -> String {
        format!(
            "UPDATE member_counts SET members = members - 1 WHERE ({KEY}) = ({});",
            key_of(row)
        )
    }

    /// The user's (OLD) active memberships, as counted with two-factor `from`, counted
    /// with `to`.
    fn move_two_factor(from: &str, to: &str) -> String {
        format!(
            "UPDATE member_counts SET members = members - 1 WHERE ({KEY}) IN (\
             SELECT account_id, status, role, {from}, 0 FROM memberships \
             WHERE user_id = OLD.id AND status = 'active'); \
             INSERT INTO member_counts ({KEY}, members) \
             SELECT account_id, status, role, {to}, 0, 1 FROM memberships \
             WHERE user_id = OLD.id AND status = 'active' AND true \
             ON CONFLICT ({KEY}) DO UPDATE SET members = members + 1;"
        )
    }

    pub fn up() -> Vec<String> {
        vec![
            format!(
                "CREATE TRIGGER member_counts_insert AFTER INSERT ON memberships BEGIN {} END",
                increment("NEW")
            ),
            format!(
                "CREATE TRIGGER member_counts_delete AFTER DELETE ON memberships BEGIN {} END",
                decrement("OLD")
            ),
            format!(
                "CREATE TRIGGER member_counts_update \
                 AFTER UPDATE OF account_id, user_id, status, role ON memberships \
                 WHEN OLD.account_id IS NOT NEW.account_id OR OLD.user_id IS NOT NEW.user_id \
                 OR OLD.status IS NOT NEW.status OR OLD.role IS NOT NEW.role \
                 BEGIN {} {} END",
                decrement("OLD"),
                increment("NEW")
            ),
            format!(
                "CREATE TRIGGER member_counts_two_factor \
                 AFTER UPDATE OF two_factor_enabled ON users \
                 WHEN OLD.two_factor_enabled IS NOT NEW.two_factor_enabled BEGIN {} END",
                move_two_factor("OLD.two_factor_enabled", "NEW.two_factor_enabled")
            ),
            // The memberships of a deleted user go with it (ON DELETE CASCADE), after its
            // row: they are counted as without two-factor first, as they then read.
            format!(
                "CREATE TRIGGER member_counts_user_deleted BEFORE DELETE ON users \
                 WHEN OLD.two_factor_enabled BEGIN {} END",
                move_two_factor("1", "0")
            ),
            format!(
                "INSERT INTO member_counts ({KEY}, members) \
                 SELECT m.account_id, m.status, m.role, \
                 m.status = 'active' AND coalesce(u.two_factor_enabled, 0), 0, count(*) \
                 FROM memberships AS m LEFT JOIN users AS u ON u.id = m.user_id \
                 GROUP BY 1, 2, 3, 4"
            ),
        ]
    }

    pub const DOWN: &[&str] = &[
        "DROP TRIGGER member_counts_user_deleted",
        "DROP TRIGGER member_counts_two_factor",
        "DROP TRIGGER member_counts_update",
        "DROP TRIGGER member_counts_delete",
        "DROP TRIGGER member_counts_insert",
    ];
}

#[derive(DeriveIden)]
enum MemberCounts {
    Table,
    AccountId,
    Status,
    Role,
    TwoFactor,
    Slot,
    Members,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    AccountId,
    Status,
    InvitationExpiresAt,
}
