//! What an operator does from the command line, through the same rules as the RPCs:
//! creating an account with its first administrator, and issuing a member a token.

use uuid::Uuid;

use super::{Error, IssuedToken, NewApiToken, UserService, Violations};
use crate::domain::{Acting, Actor, DisplayName, Email, Role};
use crate::store::Bootstrapped;

/// A new account and its first administrator, validated.
#[derive(Debug)]
pub struct NewAccount {
    pub name: DisplayName,
    pub admin_email: Email,
    pub admin_name: DisplayName,
}

impl NewAccount {
    /// The administrator's name defaults to their email's local part.
    pub fn parse(
        account_name: &str,
        admin_email: &str,
        admin_name: Option<&str>,
    ) -> Result<Self, Error> {
        let mut v = Violations::default();
        let name = v.check("account_name", DisplayName::parse(account_name));
        let admin_email = v.check("admin_email", Email::parse(admin_email));
        let local_part = admin_email
            .as_ref()
            .and_then(|email| email.as_str().split('@').next())
            .unwrap_or_default()
            .to_string();
        let admin_name = v.check(
            "admin_name",
            DisplayName::parse(admin_name.unwrap_or(&local_part)),
        );
        match (name, admin_email, admin_name) {
            (Some(name), Some(admin_email), Some(admin_name)) => Ok(Self {
                name,
                admin_email,
                admin_name,
            }),
            _ => Err(v.into_error()),
        }
    }
}

impl UserService {
    /// Creates an account with one active administrator and a permanent administrator
    /// token issued by them.
    pub async fn create_account(&self, new: &NewAccount) -> Result<Bootstrapped, Error> {
        Ok(self
            .store
            .create_account(
                &new.name,
                &new.admin_email,
                &new.admin_name,
                self.clock.now(),
            )
            .await?)
    }

    /// As [`UserService::create_account`], only while no account exists.
    pub async fn create_first_account(
        &self,
        new: &NewAccount,
    ) -> Result<Option<Bootstrapped>, Error> {
        Ok(self
            .store
            .create_first_account(
                &new.name,
                &new.admin_email,
                &new.admin_name,
                self.clock.now(),
            )
            .await?)
    }

    /// Issues a permanent token to an active member, as if they had called CreateApiToken
    /// themselves: the same rules bound its role (default: the member's).
    pub async fn issue_token_for(
        &self,
        account_id: Uuid,
        email: &Email,
        role: Option<Role>,
        name: DisplayName,
    ) -> Result<IssuedToken, Error> {
        let (user_id, member_role) = self
            .store
            .active_member_by_email(account_id, email)
            .await?
            .ok_or_else(|| {
                Error::invalid(
                    "email",
                    "is not the email of an active member of this account",
                )
            })?;
        let request = NewApiToken {
            account_id,
            name,
            description: String::new(),
            role: role.unwrap_or(member_role),
            expires_at: None,
        };
        let actor = Actor::new(
            user_id,
            Acting::Operator,
            "cli:issue-token",
            self.clock.now(),
        );
        self.issue(&request, &actor).await
    }
}
