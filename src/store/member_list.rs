//! ListUsers' reads (R10): a page of an account's members and how many match, neither of
//! which reads the whole account.
//!
//! The counts of the unfiltered list and of the status, role and two-factor filters come
//! from `member_counts`, which database triggers keep. Other counts stop after
//! [`COUNT_BOUND`] matches and say so. A search first walks a window of the account's
//! members in id order, which fills a page at once when matches are common, and asks its
//! indexes when the window falls short: PostgreSQL's trigram indexes, SQLite's FTS5
//! trigram index (`member_search`). On PostgreSQL a search with a rare part
//! (`Store::rare_part`) asks the indexes for that part at once, without the walk.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Statement,
    sea_query::{
        Alias, Expr, ExprTrait, LikeExpr, Query, SelectStatement, UnionType,
        extension::postgres::PgExpr,
    },
};
use uuid::Uuid;

use super::entity::{member_count, membership, user};
use super::rows::{self, ACTIVE, INVITED};
use super::{Error, Keyed, Store, outbox};
use crate::domain::{DeliveryState, Member, MemberStatus, Role};

/// Where no counter applies, a count stops after this many members and is a lower bound.
pub const COUNT_BOUND: u64 = 1000;
/// Members a search reads in id order before it asks its indexes instead.
const SEARCH_WINDOW: u64 = 2000;
/// Matches, estimated from the window, up to which a search is counted through its indexes;
/// beyond, the window's matches are the lower bound.
const INDEX_COUNT_LIMIT: u64 = 20_000;
/// A search text shorter than this matches the start of the email or of the name; longer,
/// any part of them (a trigram index needs three characters).
pub const MIN_FRAGMENT_CHARS: usize = 3;

/// What ListUsers narrows the account's members to.
#[derive(Clone, Debug, Default)]
pub struct MemberFilter {
    pub status: Option<MemberStatus>,
    pub two_factor_enabled: Option<bool>,
    pub role: Option<Role>,
    /// Lower-cased text to find in the email or the name, and the user id it may also be.
    pub search: Option<(String, Option<Uuid>)>,
    /// Pending members whose invitation email is in this state.
    pub delivery_state: Option<DeliveryState>,
}

/// How many members match a filter: exactly, or at least this many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberCount {
    pub members: u64,
    pub is_lower_bound: bool,
}

impl MemberCount {
    fn exact(members: u64) -> Self {
        Self {
            members,
            is_lower_bound: false,
        }
    }

    /// From a count that stopped after [`COUNT_BOUND`] + 1 matches.
    fn bounded(found: u64) -> Self {
        Self {
            members: Ord::min(found, COUNT_BOUND),
            is_lower_bound: found > COUNT_BOUND,
        }
    }
}

/// How a search finds its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup<'a> {
    /// Every member considered, in id order, its email and name compared.
    Walk,
    /// The ids the search indexes give: PostgreSQL's trigram indexes asked for the whole
    /// text, or for a rarer part of it (`Store::rare_part`) with the whole text checked on the
    /// rows they give.
    Indexes(Option<&'a str>),
}

/// Members of the account, and users of the whole database, read to judge how common each
/// part of a search text is: the account's first ones, and the table's first ones. A part
/// common in the account would make the indexes give most of its members; one common in
/// the database would make them read most of their entries.
const SAMPLE_USERS: u64 = 500;
/// A three-character part found in at most this many of the sampled members and users
/// (one in two hundred) is rare: the trigram index reads it cheaply and gives few rows.
const RARE_IN_SAMPLE: i64 = 5;
/// Parts of a search text judged at most.
const MAX_PARTS: usize = 32;

/// The three-character parts of the text, letters and digits only: those are the
/// trigrams PostgreSQL's `pg_trgm` takes from inside a word of a LIKE pattern.
fn word_parts(text: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(3)
        .enumerate()
        .filter(|(_, part)| part.iter().all(|c| c.is_alphanumeric()))
        .map(|(at, part)| (at, part.iter().collect()))
        .take(MAX_PARTS)
        .collect()
}

/// The longest run of the text whose three-character parts are all rare, given how many
/// sampled users hold each part; `None` when no part is rare.
fn rare_run(text: &str, parts: &[(usize, String)], found: &[i64]) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut best: Option<(usize, usize)> = None;
    let mut run: Option<(usize, usize)> = None;
    for ((at, _), &count) in parts.iter().zip(found) {
        if count > RARE_IN_SAMPLE {
            run = None;
            continue;
        }
        let (start, end) = match run {
            Some((start, end)) if end == *at + 2 => (start, at + 3),
            _ => (*at, at + 3),
        };
        run = Some((start, end));
        if best.is_none_or(|(s, e)| end - start > e - s) {
            best = Some((start, end));
        }
    }
    best.map(|(start, end)| chars[start..end].iter().collect())
}

/// The account's memberships the filter keeps; joined with their users when `with_users`
/// or when the filter reads them. A pending member reads as the invitation wrote them
/// (`domain::member::visible_profile`): two-factor authentication off, the invited name.
fn filtered(
    account_id: Uuid,
    filter: &MemberFilter,
    now: DateTime<Utc>,
    with_users: bool,
    backend: DatabaseBackend,
    lookup: Lookup<'_>,
) -> Select<membership::Entity> {
    let mut query = membership::Entity::find().filter(membership::Column::AccountId.eq(account_id));
    let search_reads_users = filter.search.is_some() && lookup == Lookup::Walk;
    if with_users || filter.two_factor_enabled.is_some() || search_reads_users {
        query = query.inner_join(user::Entity);
    }
    if let Some(status) = filter.status {
        let pending = membership::Column::Status.eq(INVITED);
        query = query.filter(match status {
            MemberStatus::Active => membership::Column::Status.eq(ACTIVE),
            MemberStatus::Invited => pending.and(membership::Column::InvitationExpiresAt.gt(now)),
            MemberStatus::Expired => pending.and(membership::Column::InvitationExpiresAt.lte(now)),
        });
    }
    if let Some(enabled) = filter.two_factor_enabled {
        let accepted = membership::Column::Status.eq(ACTIVE);
        query = query.filter(if enabled {
            Condition::all()
                .add(accepted)
                .add(user::Column::TwoFactorEnabled.eq(true))
        } else {
            Condition::any()
                .add(accepted.not())
                .add(user::Column::TwoFactorEnabled.eq(false))
        });
    }
    if let Some(role) = filter.role {
        query = query.filter(membership::Column::Role.eq(role.id()));
    }
    if let Some(state) = filter.delivery_state {
        query = query
            .filter(membership::Column::Status.eq(INVITED))
            .filter(Expr::exists(outbox::delivery_in(state)));
    }
    if let Some((text, maybe_id)) = &filter.search {
        let part = match lookup {
            Lookup::Indexes(part) if backend == DatabaseBackend::Postgres => part,
            _ => None,
        };
        let search = Search::new(text, *maybe_id, part);
        query = query.filter(match (lookup, backend) {
            (Lookup::Walk, _) => search.in_one_walk(),
            (Lookup::Indexes(_), DatabaseBackend::Postgres) => Condition::all()
                .add(membership::Column::Id.in_subquery(search.by_trigram_indexes(account_id))),
            (Lookup::Indexes(_), _) => Condition::all()
                .add(membership::Column::Id.in_subquery(search.by_search_table(account_id))),
        });
    }
    query
}

/// The first `size` memberships of the account after `after`, in id order.
fn window(account_id: Uuid, after: Option<Uuid>, size: u64) -> SelectStatement {
    let mut query = membership::Entity::find()
        .select_only()
        .column(membership::Column::Id)
        .filter(membership::Column::AccountId.eq(account_id));
    if let Some(after) = after {
        query = query.filter(membership::Column::Id.gt(after));
    }
    query
        .order_by_asc(membership::Column::Id)
        .limit(size)
        .into_query()
}

/// What a search matches: the email or the user id; the user's own name once they
/// accepted; the invited name while they have not (R17). A text shorter than
/// [`MIN_FRAGMENT_CHARS`] matches the start of the email or the name only.
struct Search {
    text: String,
    user_id: Option<Uuid>,
    by_user: Condition,
    by_invitation: Condition,
}

impl Search {
    /// `part`: a part of the text for PostgreSQL's trigram indexes to look up, the whole
    /// text then being compared on the rows they give.
    fn new(text: &str, user_id: Option<Uuid>, part: Option<&str>) -> Self {
        let short = text.chars().count() < MIN_FRAGMENT_CHARS;
        let escaped = escape_like(text);
        let pattern = LikeExpr::new(if short {
            format!("{escaped}%")
        } else {
            format!("%{escaped}%")
        })
        .escape('\\');
        let narrowed =
            part.map(|part| LikeExpr::new(format!("%{}%", escape_like(part))).escape('\\'));
        let like = |column: Expr| match &narrowed {
            None => Condition::all().add(column.like(pattern.clone())),
            // `column || ''` is the same text, which no index reads: the indexes are asked
            // for the rarer part alone.
            Some(narrowed) => Condition::all()
                .add(column.clone().like(narrowed.clone()))
                .add(column.concatenate("").like(pattern.clone())),
        };
        let accepted = membership::Column::Status.eq(ACTIVE);
        let mut by_user = Condition::any()
            .add(like(Expr::col((user::Entity, user::Column::Email))))
            .add(
                Condition::all()
                    .add(accepted.clone())
                    .add(like(Expr::col((user::Entity, user::Column::NameLower)))),
            );
        if let Some(id) = user_id {
            by_user = by_user.add(user::Column::Id.eq(id));
        }
        let by_invitation = Condition::all().add(accepted.not()).add(like(Expr::col((
            membership::Entity,
            membership::Column::InvitedNameLower,
        ))));
        Self {
            text: text.to_owned(),
            user_id,
            by_user,
            by_invitation,
        }
    }

    fn is_short(&self) -> bool {
        self.text.chars().count() < MIN_FRAGMENT_CHARS
    }

    /// The matching membership ids, one branch per table, so that PostgreSQL reads each
    /// branch through its trigram indexes.
    fn by_trigram_indexes(self, account_id: Uuid) -> SelectStatement {
        let of_account = || {
            membership::Entity::find()
                .select_only()
                .column(membership::Column::Id)
                .filter(membership::Column::AccountId.eq(account_id))
        };
        of_account()
            .inner_join(user::Entity)
            .filter(self.by_user)
            .into_query()
            .union(
                UnionType::All,
                of_account().filter(self.by_invitation).into_query(),
            )
            .to_owned()
    }

    /// The matching membership ids from SQLite's search table: its FTS5 trigram index for a
    /// part of the email or name, its B-tree indexes for a prefix.
    fn by_search_table(self, account_id: Uuid) -> SelectStatement {
        let rows = Alias::new("member_search_rows");
        let column = |name: &str| Expr::col((rows.clone(), Alias::new(name)));
        let mut found = Query::select();
        found
            .column((rows.clone(), Alias::new("membership_id")))
            .and_where(column("account_id").eq(account_id));
        if self.is_short() {
            let prefix = format!("{}*", escape_glob(&self.text));
            found.from(rows.clone()).cond_where(
                Condition::any()
                    .add(Expr::cust_with_values(
                        "member_search_rows.email GLOB ?",
                        [prefix.clone()],
                    ))
                    .add(Expr::cust_with_values(
                        "member_search_rows.name GLOB ?",
                        [prefix],
                    )),
            );
        } else {
            let phrase = format!("\"{}\"", self.text.replace('"', "\"\""));
            found
                .from(Alias::new("member_search"))
                .inner_join(
                    rows.clone(),
                    column("id").equals((Alias::new("member_search"), Alias::new("rowid"))),
                )
                .and_where(Expr::cust_with_values("member_search MATCH ?", [phrase]));
        }
        if let Some(id) = self.user_id {
            let by_id = membership::Entity::find()
                .select_only()
                .column(membership::Column::Id)
                .filter(membership::Column::AccountId.eq(account_id))
                .filter(membership::Column::UserId.eq(id))
                .into_query();
            found.union(UnionType::All, by_id);
        }
        found
    }

    /// One condition on the members joined with their users: a walk of the account's
    /// members in id order reads both tables anyway.
    fn in_one_walk(self) -> Condition {
        Condition::any().add(self.by_user).add(self.by_invitation)
    }
}

fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// GLOB has no escape character: a wildcard stands for itself inside brackets.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[') {
            escaped.push('[');
            escaped.push(c);
            escaped.push(']');
        } else {
            escaped.push(c);
        }
    }
    escaped
}

impl Store {
    /// One page of members in membership-id order, starting after `after`.
    #[tracing::instrument(skip_all, fields(%account_id, limit), err(level = "info"))]
    pub async fn list_members(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        after: Option<Uuid>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Keyed<Member>>, Error> {
        let rare = self.rare_part(account_id, filter).await?;
        let mut found = match &rare {
            // A rare part says that matches are rare: the indexes find them at once.
            Some(part) => {
                let lookup = Lookup::Indexes(Some(part));
                self.page(account_id, filter, after, limit, now, lookup)
                    .await?
            }
            None => {
                self.page(account_id, filter, after, limit, now, Lookup::Walk)
                    .await?
            }
        };
        // A window that did not fill the page says that matches are rare: the indexes
        // find them without reading the rest of the account.
        if filter.search.is_some() && rare.is_none() && (found.len() as u64) < limit {
            found = self
                .page(account_id, filter, after, limit, now, Lookup::Indexes(None))
                .await?;
        }
        let pending: Vec<Uuid> = found
            .iter()
            .filter(|(membership, _)| membership.status == INVITED)
            .map(|(membership, _)| membership.id)
            .collect();
        let mut deliveries = outbox::deliveries(&self.lists, &pending).await?;
        found
            .into_iter()
            .map(|(membership, user)| {
                let key = membership.id;
                let mut item = rows::member(membership, user, now)?;
                item.invitation_delivery = deliveries.remove(&key);
                Ok(Keyed { key, item })
            })
            .collect()
    }

    /// Up to `limit` matching members after `after`; a search walks a window of the
    /// account's members only.
    async fn page(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        after: Option<Uuid>,
        limit: u64,
        now: DateTime<Utc>,
        lookup: Lookup<'_>,
    ) -> Result<Vec<(membership::Model, user::Model)>, Error> {
        let backend = self.db.get_database_backend();
        let mut query = filtered(account_id, filter, now, true, backend, lookup);
        if let Some(after) = after {
            query = query.filter(membership::Column::Id.gt(after));
        }
        if filter.search.is_some() && lookup == Lookup::Walk {
            query = query.filter(membership::Column::Id.in_subquery(window(
                account_id,
                after,
                SEARCH_WINDOW,
            )));
        }
        let found = query
            .order_by_asc(membership::Column::Id)
            .limit(limit)
            .select_also(user::Entity)
            .all(&self.lists)
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(membership, user)| Some((membership, user?)))
            .collect())
    }

    /// How many members match the filter, on all pages: exact from the counters where
    /// they apply, else counted up to [`COUNT_BOUND`].
    #[tracing::instrument(skip_all, fields(%account_id), err(level = "info"))]
    pub async fn count_members(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        now: DateTime<Utc>,
    ) -> Result<MemberCount, Error> {
        if filter.search.is_some() {
            return self.count_search(account_id, filter, now).await;
        }
        if filter.delivery_state.is_some() {
            return self
                .count_bounded(account_id, filter, now, Lookup::Walk)
                .await;
        }
        let counted = |status| self.counted(account_id, status, filter);
        match filter.status {
            None => Ok(MemberCount::exact(counted(None).await?)),
            Some(MemberStatus::Active) => Ok(MemberCount::exact(counted(Some(ACTIVE)).await?)),
            Some(status @ (MemberStatus::Invited | MemberStatus::Expired)) => {
                // Pending members are counted; which of them expired is not, as it
                // changes with the clock: those are counted up to the bound.
                let pending = counted(Some(INVITED)).await?;
                if pending == 0 {
                    return Ok(MemberCount::exact(0));
                }
                let expired_filter = MemberFilter {
                    status: Some(MemberStatus::Expired),
                    ..filter.clone()
                };
                let expired = self
                    .count_bounded(account_id, &expired_filter, now, Lookup::Walk)
                    .await?;
                match (status, expired.is_lower_bound) {
                    (MemberStatus::Invited, false) => {
                        Ok(MemberCount::exact(pending.saturating_sub(expired.members)))
                    }
                    (MemberStatus::Invited, true) => {
                        self.count_bounded(account_id, filter, now, Lookup::Walk)
                            .await
                    }
                    _ => Ok(expired),
                }
            }
        }
    }

    /// The counters' sum for the account, with this stored status, and the filter's role
    /// and two-factor state.
    async fn counted(
        &self,
        account_id: Uuid,
        status: Option<&str>,
        filter: &MemberFilter,
    ) -> Result<u64, Error> {
        let mut query = member_count::Entity::find()
            .select_only()
            .expr(Expr::cust("CAST(COALESCE(SUM(members), 0) AS BIGINT)"))
            .filter(member_count::Column::AccountId.eq(account_id));
        if let Some(status) = status {
            query = query.filter(member_count::Column::Status.eq(status));
        }
        if let Some(role) = filter.role {
            query = query.filter(member_count::Column::Role.eq(role.id()));
        }
        if let Some(enabled) = filter.two_factor_enabled {
            query = query.filter(member_count::Column::TwoFactor.eq(enabled));
        }
        let sum: Option<i64> = query.into_tuple().one(&self.lists).await?;
        Ok(u64::try_from(sum.unwrap_or(0)).unwrap_or(0))
    }

    /// A search's count: exact in a small account or through the indexes when matches are
    /// rare; when they are common, the matches among the account's first members, a lower
    /// bound.
    async fn count_search(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        now: DateTime<Utc>,
    ) -> Result<MemberCount, Error> {
        let backend = self.db.get_database_backend();
        let members = self
            .counted(account_id, None, &MemberFilter::default())
            .await?;
        if members > SEARCH_WINDOW
            && let Some(part) = self.rare_part(account_id, filter).await?
        {
            let lookup = Lookup::Indexes(Some(&part));
            return self.count_bounded(account_id, filter, now, lookup).await;
        }
        let in_window = filtered(account_id, filter, now, false, backend, Lookup::Walk)
            .filter(membership::Column::Id.in_subquery(window(account_id, None, SEARCH_WINDOW)))
            .count(&self.lists)
            .await?;
        if members <= SEARCH_WINDOW {
            return Ok(MemberCount::exact(in_window));
        }
        let estimate = in_window.saturating_mul(members) / SEARCH_WINDOW;
        if estimate <= INDEX_COUNT_LIMIT {
            return self
                .count_bounded(account_id, filter, now, Lookup::Indexes(None))
                .await;
        }
        Ok(MemberCount {
            members: in_window,
            is_lower_bound: true,
        })
    }

    /// PostgreSQL: the longest part of the search text whose trigrams are rare among a
    /// sample of the account's members and of the database's users, for the trigram
    /// indexes to look up instead of the whole text. A trigram that most users hold (`mem`
    /// of "member77777" where every email starts with "member") costs the index a read of
    /// most of its entries; the rare ones alone give few rows, on which the whole text is
    /// then compared. `None`: no part is rare, or no search, or SQLite.
    async fn rare_part(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
    ) -> Result<Option<String>, Error> {
        let Some((text, _)) = &filter.search else {
            return Ok(None);
        };
        if self.backend() != DatabaseBackend::Postgres {
            return Ok(None);
        }
        let parts = word_parts(text);
        if parts.is_empty() {
            return Ok(None);
        }
        // One count per part over the sampled emails and names.
        let mut sql = String::from("SELECT ");
        let mut values: Vec<sea_orm::Value> = vec![account_id.into()];
        for (n, (_, part)) in parts.iter().enumerate() {
            if n > 0 {
                sql.push_str(", ");
            }
            let p = n + 2;
            sql.push_str(&format!(
                "count(*) FILTER (WHERE email LIKE ${p} ESCAPE E'\\\\' \
                 OR name_lower LIKE ${p} ESCAPE E'\\\\' \
                 OR invited_name_lower LIKE ${p} ESCAPE E'\\\\')"
            ));
            values.push(format!("%{}%", escape_like(part)).into());
        }
        sql.push_str(&format!(
            " FROM ((SELECT u.email, u.name_lower, m.invited_name_lower \
             FROM memberships AS m JOIN users AS u ON u.id = m.user_id \
             WHERE m.account_id = $1 ORDER BY m.id LIMIT {SAMPLE_USERS}) \
             UNION ALL (SELECT email, name_lower, NULL FROM users LIMIT {SAMPLE_USERS})) AS sample"
        ));
        let statement = Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values);
        // Its plan (the first rows of the table) suits any text: the main pool keeps it.
        let row = self
            .reader
            .query_one_raw(statement)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("sample".into()))?;
        let found = (0..parts.len())
            .map(|n| row.try_get_by_index::<i64>(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rare_run(text, &parts, &found))
    }

    /// Counts the matches up to [`COUNT_BOUND`] + 1.
    async fn count_bounded(
        &self,
        account_id: Uuid,
        filter: &MemberFilter,
        now: DateTime<Utc>,
        lookup: Lookup<'_>,
    ) -> Result<MemberCount, Error> {
        let backend = self.db.get_database_backend();
        let matches = filtered(account_id, filter, now, false, backend, lookup)
            .select_only()
            .column(membership::Column::Id)
            .limit(COUNT_BOUND + 1)
            .into_query();
        let count = Query::select()
            .expr(Expr::cust("count(*)"))
            .from_subquery(matches, Alias::new("bounded"))
            .to_owned();
        let row = self
            .lists
            .query_one(&count)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("count".into()))?;
        let found: i64 = row.try_get_by_index(0)?;
        Ok(MemberCount::bounded(u64::try_from(found).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_of_a_search_text_are_its_letter_and_digit_trigrams() {
        let parts = word_parts("ab.cde");
        assert_eq!(parts, vec![(3, "cde".to_string())]);
        assert!(word_parts("ab").is_empty());
        assert_eq!(word_parts("zoë1")[1], (1, "oë1".to_string()));
    }

    #[test]
    fn the_longest_run_of_rare_parts_is_looked_up() {
        let text = "member77777";
        let parts = word_parts(text);
        // mem emb mbe ber er7 r77 777 777 777
        let found = [1000, 1000, 1000, 1000, 111, RARE_IN_SAMPLE, 1, 1, 1];
        assert_eq!(rare_run(text, &parts, &found).as_deref(), Some("r77777"));
        let common = [1000; 9];
        assert_eq!(rare_run(text, &parts, &common), None);
        // Two runs: the longer one wins.
        let found = [0, 0, 1000, 1000, 0, 0, 0, 1000, 0];
        assert_eq!(rare_run(text, &parts, &found).as_deref(), Some("er777"));
    }

    #[test]
    fn a_run_does_not_bridge_a_part_that_is_not_a_word() {
        let text = "ann 31415";
        let parts = word_parts(text);
        assert_eq!(parts.len(), 4);
        // "ann" and "314" are both rare but not adjacent: the longer run wins.
        let found = [0, 0, 0, 0];
        assert_eq!(rare_run(text, &parts, &found).as_deref(), Some("31415"));
    }

    #[test]
    fn like_wildcards_in_search_text_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(escape_like("ada"), "ada");
    }

    #[test]
    fn glob_wildcards_in_search_text_stand_for_themselves() {
        assert_eq!(escape_glob("a*?[b"), "a[*][?][[]b");
        assert_eq!(escape_glob("ada"), "ada");
    }

    #[test]
    fn a_count_past_the_bound_is_a_lower_bound() {
        assert_eq!(
            MemberCount::bounded(COUNT_BOUND),
            MemberCount::exact(COUNT_BOUND)
        );
        assert_eq!(
            MemberCount::bounded(COUNT_BOUND + 1),
            MemberCount {
                members: COUNT_BOUND,
                is_lower_bound: true
            }
        );
    }
}
