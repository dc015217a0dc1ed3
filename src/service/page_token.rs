//! Page tokens: the key a page ends at, tied to the query it came from (a fingerprint of
//! its filters), so it cannot be replayed on another query.

use std::fmt::Debug;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Error;

/// The filters of one query, which its page tokens are tied to.
pub struct Query(String);

impl Query {
    /// `list` names the listing; `filters` are everything that selects its rows.
    pub fn new(list: &str, filters: &impl Debug) -> Self {
        let canonical = format!("{list}|{filters:?}");
        Self(hex::encode(&Sha256::digest(canonical.as_bytes())[..8]))
    }

    pub fn encode(&self, last: Uuid) -> String {
        URL_SAFE_NO_PAD.encode(format!("{last}.{}", self.0))
    }

    /// The key the page starts after; `None` for the first page.
    pub fn decode(&self, token: &str) -> Result<Option<Uuid>, Error> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::invalid("page_token", "is not a page token of this query");
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        let (last, seen) = raw.split_once('.').ok_or_else(invalid)?;
        if seen != self.0 {
            return Err(invalid());
        }
        Uuid::try_parse(last).map(Some).map_err(|_| invalid())
    }

    /// Cuts the rows fetched (one more than a page, to learn whether another page follows)
    /// to a page, and makes the token of the next page from its last row's key.
    pub fn paginate<T>(
        &self,
        mut rows: Vec<T>,
        page_size: u64,
        key: impl Fn(&T) -> Uuid,
    ) -> (Vec<T>, String) {
        let has_more = rows.len() as u64 > page_size;
        rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        let next = match rows.last() {
            Some(last) if has_more => self.encode(key(last)),
            _ => String::new(),
        };
        (rows, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_round_trips_within_its_query() {
        let query = Query::new("users", &("ada", Some(3)));
        let last = Uuid::now_v7();
        assert_eq!(query.decode(&query.encode(last)).unwrap(), Some(last));
        assert_eq!(query.decode("").unwrap(), None);
    }

    #[test]
    fn a_page_token_of_another_query_is_refused() {
        let first = Query::new("users", &("ada", None::<u8>));
        let other = Query::new("users", &("bob", None::<u8>));
        let tokens = Query::new("tokens", &("ada", None::<u8>));
        let token = first.encode(Uuid::now_v7());
        assert!(matches!(
            other.decode(&token),
            Err(Error::InvalidArgument(_))
        ));
        assert!(tokens.decode(&token).is_err());
    }

    #[test]
    fn garbage_page_tokens_are_refused() {
        let query = Query::new("users", &());
        for garbage in ["x", "!!!", "bm90LWEtdG9rZW4"] {
            assert!(query.decode(garbage).is_err(), "{garbage} accepted");
        }
    }

    #[test]
    fn a_page_is_cut_and_continues_after_its_last_key() {
        let query = Query::new("users", &());
        let keys: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let (page, next) = query.paginate(keys.clone(), 2, |key| *key);
        assert_eq!(page, keys[..2]);
        assert_eq!(query.decode(&next).unwrap(), Some(keys[1]));
        let (page, next) = query.paginate(keys.clone(), 3, |key| *key);
        assert_eq!(page.len(), 3);
        assert!(next.is_empty());
    }
}
