//! ListAuditEvents: who did what in an account.

use uuid::Uuid;

use super::{Error, Presented, UserService, page_token};
use crate::domain::{AuditAction, AuditEvent, administrators::check_administrator};

#[derive(Clone, Debug)]
pub struct AuditQuery {
    pub account_id: Uuid,
    pub page_size: u64,
    pub page_token: String,
    pub target_user_id: Option<Uuid>,
    pub action: Option<AuditAction>,
}

#[derive(Debug)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next_page_token: String,
}

impl UserService {
    /// The account's events, newest first; administrators only.
    #[tracing::instrument(skip_all, fields(account_id = %query.account_id), err(level = "info"))]
    pub async fn list_audit(
        &self,
        presented: &Presented,
        query: AuditQuery,
    ) -> Result<AuditPage, Error> {
        let (_, role) = self.reader_in(presented, query.account_id).await?;
        check_administrator(role, "read the audit trail")?;
        let pages = page_token::Query::new(
            "audit",
            &(
                query.account_id,
                query.target_user_id,
                query.action.map(AuditAction::as_str),
            ),
        );
        let before = pages.decode(&query.page_token)?;
        let events = self
            .store
            .list_audit_events(
                query.account_id,
                query.target_user_id,
                query.action,
                before,
                query.page_size + 1,
            )
            .await?;
        let (events, next_page_token) = pages.paginate(events, query.page_size, |event| event.id);
        Ok(AuditPage {
            events,
            next_page_token,
        })
    }
}
