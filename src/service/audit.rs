//! ListAuditEvents: who did what in an account.

use uuid::Uuid;

use super::{Caller, Error, UserService, caller, page_token};
use crate::store::{
    self,
    audit::{Action, Change},
    entity::audit_event,
};

#[derive(Clone, Debug)]
pub struct AuditQuery {
    pub account_id: Uuid,
    pub page_size: u64,
    pub page_token: String,
    pub target_user_id: Option<Uuid>,
    pub action: Option<Action>,
}

#[derive(Debug)]
pub struct AuditPage {
    pub events: Vec<(audit_event::Model, Action, Vec<Change>)>,
    pub next_page_token: String,
}

impl UserService {
    /// The account's events, newest first; administrators only.
    #[tracing::instrument(skip_all, fields(account_id = %query.account_id), err)]
    pub async fn list_audit(&self, caller: &Caller, query: AuditQuery) -> Result<AuditPage, Error> {
        caller::administrator_of(&self.db, caller, query.account_id, "read the audit trail")
            .await?;
        let canonical = format!(
            "audit|{}|{:?}|{:?}",
            query.account_id,
            query.target_user_id,
            query.action.map(Action::as_str)
        );
        let before = page_token::decode(&query.page_token, &canonical)?;
        let rows = store::audit::list(
            &self.db,
            query.account_id,
            query.target_user_id,
            query.action,
            before,
            query.page_size + 1,
        )
        .await?;
        let (rows, next_page_token) =
            page_token::paginate(rows, query.page_size, &canonical, |event| event.id);
        let events = rows
            .into_iter()
            .map(|event| {
                let action = Action::parse(&event.action)
                    .ok_or(Error::Internal("stored audit action is not valid"))?;
                let changes = serde_json::from_str(&event.changes)
                    .map_err(|_| Error::Internal("stored audit changes are not valid"))?;
                Ok((event, action, changes))
            })
            .collect::<Result<_, Error>>()?;
        Ok(AuditPage {
            events,
            next_page_token,
        })
    }
}
