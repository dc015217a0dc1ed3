//! ListUsers (R10): filters, search and keyset paging with an opaque token.

use uuid::Uuid;

use super::{Error, Presented, UserService, page_token};
use crate::domain::{DeliveryState, Member, MemberStatus, Role};
use crate::store::{MemberCount, MemberFilter};

/// A validated ListUsers request.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub account_id: Uuid,
    pub page_size: u64,
    pub page_token: String,
    pub search: String,
    pub status: Option<MemberStatus>,
    pub two_factor_enabled: Option<bool>,
    pub role: Option<Role>,
    /// Pending members whose invitation email is in this state.
    pub delivery_state: Option<DeliveryState>,
}

#[derive(Debug)]
pub struct ListPage {
    pub members: Vec<Member>,
    pub next_page_token: String,
    /// Exact where the store keeps counts, else a lower bound past a limit.
    pub total_size: MemberCount,
}

impl ListQuery {
    pub const DEFAULT_PAGE_SIZE: u64 = 50;
    pub const MAX_PAGE_SIZE: u64 = 1000;

    fn filter(&self) -> MemberFilter {
        let search = self.search.trim();
        MemberFilter {
            status: self.status,
            two_factor_enabled: self.two_factor_enabled,
            role: self.role,
            search: (!search.is_empty())
                .then(|| (search.to_lowercase(), Uuid::try_parse(search).ok())),
            delivery_state: self.delivery_state,
        }
    }

    /// The query's filters, which its page tokens are tied to.
    fn pages(&self) -> page_token::Query {
        let filters = (
            self.account_id,
            self.search.trim(),
            self.status,
            self.two_factor_enabled,
            self.role.map(Role::id),
        );
        // Without a delivery filter, the tokens read as they did before it existed.
        match self.delivery_state {
            None => page_token::Query::new("users", &filters),
            Some(state) => page_token::Query::new("users", &(filters, state)),
        }
    }
}

impl UserService {
    #[tracing::instrument(skip_all, fields(account_id = %query.account_id), err(level = "info"))]
    pub async fn list(&self, presented: &Presented, query: ListQuery) -> Result<ListPage, Error> {
        let pages = query.pages();
        let after = pages.decode(&query.page_token)?;
        self.reader_in(presented, query.account_id).await?;
        let now = self.clock.now();
        let filter = query.filter();
        let page_size = query.page_size.clamp(1, ListQuery::MAX_PAGE_SIZE);
        // One row more than the page tells whether another page follows.
        let rows = self
            .store
            .list_members(query.account_id, &filter, after, page_size + 1, now)
            .await?;
        let (rows, next_page_token) = pages.paginate(rows, page_size, |row| row.key);
        // The first page, when no page follows it, holds every match: no count is needed.
        let total_size = if after.is_none() && next_page_token.is_empty() {
            MemberCount {
                members: rows.len() as u64,
                is_lower_bound: false,
            }
        } else {
            self.store
                .count_members(query.account_id, &filter, now)
                .await?
        };
        Ok(ListPage {
            members: rows.into_iter().map(|row| row.item).collect(),
            next_page_token,
            total_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> ListQuery {
        ListQuery {
            account_id: Uuid::nil(),
            page_size: 10,
            page_token: String::new(),
            search: "ada".into(),
            status: None,
            two_factor_enabled: None,
            role: None,
            delivery_state: None,
        }
    }

    #[test]
    fn page_tokens_are_tied_to_every_filter() {
        let first = query();
        let token = first.pages().encode(Uuid::now_v7());
        assert!(first.pages().decode(&token).is_ok());
        let mut others = vec![query(), query(), query(), query(), query(), query()];
        others[0].search = "bob".into();
        others[1].status = Some(MemberStatus::Active);
        others[2].two_factor_enabled = Some(true);
        others[3].role = Some(Role::Users);
        others[4].account_id = Uuid::now_v7();
        others[5].delivery_state = Some(DeliveryState::Failed);
        for other in others {
            assert!(other.pages().decode(&token).is_err(), "{other:?}");
        }
    }

    #[test]
    fn surrounding_blanks_of_the_search_do_not_change_the_query() {
        let mut padded = query();
        padded.search = "  ada ".into();
        let token = query().pages().encode(Uuid::now_v7());
        assert!(padded.pages().decode(&token).is_ok());
    }
}
