use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// An index for ListUsers' search on SQLite, which has no trigram index of its own: per
/// membership, the email and the name its account sees (the user's own once accepted, the
/// invited one before, R17), lower-cased as stored; an FTS5 trigram index over them finds a
/// part of 3 characters or more, B-tree indexes a prefix of a shorter one. Triggers keep it
/// in step with `memberships` and `users`, so rows written by plain SQL are found too.
///
/// `member_search_rows` has an INTEGER PRIMARY KEY, which VACUUM keeps, for the FTS5 index
/// to point at. PostgreSQL searches its trigram indexes (`m20261129_000007`).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        for statement in UP {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        for statement in DOWN {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}

const UP: &[&str] = &[
    "CREATE TABLE member_search_rows (\
     id INTEGER PRIMARY KEY, membership_id BLOB NOT NULL UNIQUE, \
     account_id BLOB NOT NULL, email TEXT NOT NULL, name TEXT NOT NULL)",
    "CREATE INDEX ix_member_search_rows_email ON member_search_rows (account_id, email)",
    "CREATE INDEX ix_member_search_rows_name ON member_search_rows (account_id, name)",
    "CREATE VIRTUAL TABLE member_search USING fts5(email, name, \
     content = 'member_search_rows', content_rowid = 'id', tokenize = 'trigram')",
    "CREATE TRIGGER member_search_rows_insert AFTER INSERT ON member_search_rows BEGIN \
     INSERT INTO member_search (rowid, email, name) VALUES (NEW.id, NEW.email, NEW.name); END",
    "CREATE TRIGGER member_search_rows_delete AFTER DELETE ON member_search_rows BEGIN \
     INSERT INTO member_search (member_search, rowid, email, name) \
     VALUES ('delete', OLD.id, OLD.email, OLD.name); END",
    "CREATE TRIGGER member_search_rows_update AFTER UPDATE ON member_search_rows BEGIN \
     INSERT INTO member_search (member_search, rowid, email, name) \
     VALUES ('delete', OLD.id, OLD.email, OLD.name); \
     INSERT INTO member_search (rowid, email, name) VALUES (NEW.id, NEW.email, NEW.name); END",
    "CREATE TRIGGER member_search_membership_insert AFTER INSERT ON memberships BEGIN \
     INSERT INTO member_search_rows (membership_id, account_id, email, name) \
     SELECT NEW.id, NEW.account_id, u.email, \
     CASE WHEN NEW.status = 'active' THEN u.name_lower ELSE NEW.invited_name_lower END \
     FROM users AS u WHERE u.id = NEW.user_id; END",
    "CREATE TRIGGER member_search_membership_delete AFTER DELETE ON memberships BEGIN \
     DELETE FROM member_search_rows WHERE membership_id = OLD.id; END",
    "CREATE TRIGGER member_search_membership_update \
     AFTER UPDATE OF account_id, user_id, status, invited_name_lower ON memberships \
     WHEN OLD.account_id IS NOT NEW.account_id OR OLD.user_id IS NOT NEW.user_id \
     OR OLD.status IS NOT NEW.status OR OLD.invited_name_lower IS NOT NEW.invited_name_lower \
     BEGIN \
     UPDATE member_search_rows SET account_id = NEW.account_id, \
     email = (SELECT email FROM users WHERE id = NEW.user_id), \
     name = CASE WHEN NEW.status = 'active' \
     THEN (SELECT name_lower FROM users WHERE id = NEW.user_id) \
     ELSE NEW.invited_name_lower END \
     WHERE membership_id = OLD.id; END",
    "CREATE TRIGGER member_search_user_update AFTER UPDATE OF email, name_lower ON users \
     WHEN OLD.email IS NOT NEW.email OR OLD.name_lower IS NOT NEW.name_lower BEGIN \
     UPDATE member_search_rows SET email = NEW.email, \
     name = (SELECT CASE WHEN m.status = 'active' THEN NEW.name_lower \
     ELSE m.invited_name_lower END \
     FROM memberships AS m WHERE m.id = member_search_rows.membership_id) \
     WHERE membership_id IN (SELECT id FROM memberships WHERE user_id = NEW.id); END",
    "INSERT INTO member_search_rows (membership_id, account_id, email, name) \
     SELECT m.id, m.account_id, u.email, \
     CASE WHEN m.status = 'active' THEN u.name_lower ELSE m.invited_name_lower END \
     FROM memberships AS m JOIN users AS u ON u.id = m.user_id",
];

const DOWN: &[&str] = &[
    "DROP TRIGGER member_search_user_update",
    "DROP TRIGGER member_search_membership_update",
    "DROP TRIGGER member_search_membership_delete",
    "DROP TRIGGER member_search_membership_insert",
    "DROP TABLE member_search",
    "DROP TABLE member_search_rows",
];
