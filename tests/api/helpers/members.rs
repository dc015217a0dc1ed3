//! Accounts and members made straight in the database, for tests about what the service
//! does with them rather than about how they came to be.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait};
use uuid::Uuid;

use usermgmt::{
    clock::Clock,
    domain::{ApiTokenSecret, CloudAccess, DisplayName, Email, Language, Role},
    store::{Store, entity},
};

use super::TestApp;

/// An account with its first administrator and that administrator's API token.
#[derive(Clone)]
pub struct Account {
    pub id: Uuid,
    pub admin_id: Uuid,
    pub admin_token: String,
}

/// Creates an account and its administrator as the service's bootstrap does; the one place
/// the tests create accounts.
pub async fn create_account(
    db: &DatabaseConnection,
    name: &str,
    admin_email: &str,
    admin_name: &str,
    now: DateTime<Utc>,
) -> Account {
    let created = Store::new(db.clone())
        .create_account(
            &DisplayName::parse(name).expect("a valid account name"),
            &Email::parse(admin_email).expect("a valid administrator email"),
            &DisplayName::parse(admin_name).expect("a valid administrator name"),
            now,
        )
        .await
        .expect("the account is created");
    Account {
        id: created.account_id,
        admin_id: created.user_id,
        admin_token: created.api_token.expose().to_string(),
    }
}

/// A member added straight to the database, with an API token of the given role.
pub struct Member {
    pub user_id: Uuid,
    pub token: String,
}

impl TestApp {
    /// Adds an active member of `account_id` holding a token of `token_role`.
    pub async fn add_member(
        &self,
        account_id: Uuid,
        email: &str,
        role: Role,
        token_role: Role,
    ) -> Member {
        let user_id = self.add_member_without_token(account_id, email, role).await;
        let token = self
            .issue_token(account_id, user_id, token_role, None)
            .await;
        Member { user_id, token }
    }

    /// Adds an active member of `account_id` (a new, activated user) with no token.
    pub async fn add_member_without_token(
        &self,
        account_id: Uuid,
        email: &str,
        role: Role,
    ) -> Uuid {
        let now = self.clock.now();
        let user_id = Uuid::now_v7();
        entity::user::ActiveModel {
            id: Set(user_id),
            email: Set(email.to_lowercase()),
            name: Set(email.into()),
            name_lower: Set(email.to_lowercase()),
            language: Set(Language::En.code().into()),
            password_hash: Set(None),
            activated: Set(true),
            two_factor_enabled: Set(false),
            created_at: Set(now),
        }
        .insert(&self.db)
        .await
        .unwrap();
        entity::membership::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(account_id),
            user_id: Set(user_id),
            role: Set(role.id()),
            cloud_access: Set(serde_json::to_string(&CloudAccess::default_for(role)).unwrap()),
            status: Set("active".into()),
            invited_by: Set(None),
            invited_at: Set(now),
            invitation_expires_at: Set(None),
            accepted_at: Set(Some(now)),
            invited_name: Set(email.into()),
            invited_name_lower: Set(email.to_lowercase()),
            invited_language: Set(Language::En.code().to_string()),
            created_at: Set(now),
        }
        .insert(&self.db)
        .await
        .unwrap();
        user_id
    }

    pub async fn issue_token(
        &self,
        account_id: Uuid,
        issuer_id: Uuid,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> String {
        let secret = ApiTokenSecret::generate();
        entity::api_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(account_id),
            issuer_id: Set(issuer_id),
            name: Set("test".into()),
            description: Set(String::new()),
            role: Set(role.id()),
            secret_hash: Set(secret.hash().into_string()),
            expires_at: Set(expires_at),
            created_at: Set(self.clock.now()),
            last_used_at: Set(None),
            deleted_at: Set(None),
        }
        .insert(&self.db)
        .await
        .unwrap();
        secret.expose().to_string()
    }

    /// A second account with its own administrator: (account, administrator, their token).
    pub async fn other_account(&self, admin_email: &str) -> (Uuid, Uuid, String) {
        let account = create_account(
            &self.db,
            "Globex",
            admin_email,
            "Bob Boss",
            self.clock.now(),
        )
        .await;
        (account.id, account.admin_id, account.admin_token)
    }

    pub async fn count_users(&self) -> usize {
        entity::user::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
            .len()
    }
}
