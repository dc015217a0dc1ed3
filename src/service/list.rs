//! ListUsers (R10): filters, search and keyset paging with an opaque token.

use uuid::Uuid;

use super::{Caller, Error, MemberView, UserService, caller, page_token};
use crate::domain::{MemberStatus, Role};
use crate::store::{self, members::MemberFilter};

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
}

#[derive(Debug)]
pub struct ListPage {
    pub members: Vec<MemberView>,
    pub next_page_token: String,
    pub total_size: u64,
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
        }
    }

    /// The query's filters, which its page tokens are tied to.
    fn canonical(&self) -> String {
        format!(
            "users|{}|{}|{:?}|{:?}|{:?}",
            self.account_id,
            self.search.trim(),
            self.status,
            self.two_factor_enabled,
            self.role.map(Role::id)
        )
    }

    fn decode_token(&self) -> Result<Option<Uuid>, Error> {
        page_token::decode(&self.page_token, &self.canonical())
    }
}

impl UserService {
    #[tracing::instrument(skip_all, fields(account_id = %query.account_id), err)]
    pub async fn list(&self, caller: &Caller, query: ListQuery) -> Result<ListPage, Error> {
        let after = query.decode_token()?;
        caller::role_in(&self.db, caller, query.account_id).await?;
        let now = self.clock.now();
        let filter = query.filter();
        let page_size = query.page_size.clamp(1, ListQuery::MAX_PAGE_SIZE);
        // One row more than the page tells whether another page follows.
        let rows = store::members::list(
            &self.db,
            query.account_id,
            &filter,
            after,
            page_size + 1,
            now,
        )
        .await?;
        let (rows, next_page_token) =
            page_token::paginate(rows, page_size, &query.canonical(), |(membership, _)| {
                membership.id
            });
        let total_size = store::members::count(&self.db, query.account_id, &filter, now).await?;
        let members = rows
            .into_iter()
            .map(|member| MemberView::from_rows(member, now))
            .collect::<Result<_, _>>()?;
        Ok(ListPage {
            members,
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
        }
    }

    #[test]
    fn a_page_token_round_trips_within_its_query() {
        let mut q = query();
        let last = Uuid::now_v7();
        q.page_token = page_token::encode(last, &q.canonical());
        assert_eq!(q.decode_token().unwrap(), Some(last));
    }

    #[test]
    fn a_page_token_of_another_query_is_refused() {
        let first = query();
        let mut other = query();
        other.search = "bob".into();
        other.page_token = page_token::encode(Uuid::now_v7(), &first.canonical());
        assert!(matches!(
            other.decode_token(),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn garbage_page_tokens_are_refused() {
        for garbage in ["x", "!!!", "bm90LWEtdG9rZW4"] {
            let mut q = query();
            q.page_token = garbage.into();
            assert!(q.decode_token().is_err(), "{garbage} accepted");
        }
    }
}
