//! Accounts, and creating one with its first administrator.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    PaginatorTrait,
};
use uuid::Uuid;

use super::entity::{account, api_token, membership, user};
use super::rows::ACTIVE;
use super::{Error, Store, members};
use crate::domain::{ApiTokenSecret, CloudAccess, DisplayName, Email, Language, Role};

/// What bootstrapping made; the secret is shown once and never stored.
pub struct Bootstrapped {
    pub account_id: Uuid,
    pub user_id: Uuid,
    pub api_token: ApiTokenSecret,
}

/// Creates an account with one active administrator and a permanent administrator API
/// token issued by them. An administrator whose email already has a user is that user.
impl Store {
    #[tracing::instrument(skip_all, fields(otel.name = "db.transaction create_account"), err(level = "info"))]
    pub async fn create_account(
        &self,
        account_name: &DisplayName,
        admin_email: &Email,
        admin_name: &DisplayName,
        now: DateTime<Utc>,
    ) -> Result<Bootstrapped, Error> {
        let tx = self.begin_write().await?;
        let created = insert_with_admin(&tx, account_name, admin_email, admin_name, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// As [`Store::create_account`], but only while the database holds no account: replicas
    /// starting together on an empty database create one account between them.
    #[tracing::instrument(skip_all, fields(otel.name = "db.transaction create_first_account"), err(level = "info"))]
    pub async fn create_first_account(
        &self,
        account_name: &DisplayName,
        admin_email: &Email,
        admin_name: &DisplayName,
        now: DateTime<Utc>,
    ) -> Result<Option<Bootstrapped>, Error> {
        let tx = self.begin_write().await?;
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            // Conflicts with itself and with inserts: a second replica waits here, then
            // finds the first one's account. SQLite's BEGIN IMMEDIATE already serialises.
            tx.execute_unprepared("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
                .await?;
        }
        if account::Entity::find().count(&tx).await? > 0 {
            return Ok(None);
        }
        let created = insert_with_admin(&tx, account_name, admin_email, admin_name, now).await?;
        tx.commit().await?;
        Ok(Some(created))
    }
}

async fn insert_with_admin(
    tx: &impl ConnectionTrait,
    account_name: &DisplayName,
    admin_email: &Email,
    admin_name: &DisplayName,
    now: DateTime<Utc>,
) -> Result<Bootstrapped, DbErr> {
    let account_id = Uuid::now_v7();
    account::ActiveModel {
        id: Set(account_id),
        name: Set(account_name.as_str().to_string()),
        created_at: Set(now),
    }
    .insert(tx)
    .await?;

    let user_id = match members::find_user_by_email(tx, admin_email).await? {
        Some(existing) => existing.id,
        None => {
            let id = Uuid::now_v7();
            user::ActiveModel {
                id: Set(id),
                email: Set(admin_email.to_string()),
                name: Set(admin_name.as_str().to_string()),
                name_lower: Set(admin_name.as_str().to_lowercase()),
                language: Set(Language::En.code().to_string()),
                password_hash: Set(None),
                activated: Set(true),
                two_factor_enabled: Set(false),
                created_at: Set(now),
            }
            .insert(tx)
            .await?;
            id
        }
    };
    membership::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(account_id),
        user_id: Set(user_id),
        role: Set(Role::Administrators.id()),
        cloud_access: Set(CloudAccess::default_for(Role::Administrators).to_text()),
        status: Set(ACTIVE.to_string()),
        invited_by: Set(None),
        invited_at: Set(now),
        invitation_expires_at: Set(None),
        accepted_at: Set(Some(now)),
        invited_name: Set(admin_name.as_str().to_string()),
        invited_name_lower: Set(admin_name.as_str().to_lowercase()),
        invited_language: Set(Language::En.code().to_string()),
        created_at: Set(now),
    }
    .insert(tx)
    .await?;

    let api_token = ApiTokenSecret::generate();
    api_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(account_id),
        issuer_id: Set(user_id),
        name: Set("bootstrap".to_string()),
        description: Set("Created with the account".to_string()),
        role: Set(Role::Administrators.id()),
        secret_hash: Set(api_token.hash().into_string()),
        expires_at: Set(None),
        created_at: Set(now),
        last_used_at: Set(None),
        deleted_at: Set(None),
    }
    .insert(tx)
    .await?;
    Ok(Bootstrapped {
        account_id,
        user_id,
        api_token,
    })
}
