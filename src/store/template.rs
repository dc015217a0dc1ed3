//! Statements whose text depends only on their shape, built once and given each call's
//! values.
//!
//! Building GetUser's statement with sea-query (the expression tree, then its SQL) took more
//! of the server's work than the rest of the call: about 150,000 instructions of 400,000
//! (callgrind, docs/benchmarks.md §6). The reads on every call's path build theirs once
//! per backend, with a stand-in for each argument, and then only swap the values. So do the
//! statements of an invitation (its facts, its audit event) and the API token lookup.

use std::sync::OnceLock;

use sea_orm::{DatabaseBackend, Statement, StatementBuilder, Value, Values};

/// A statement's SQL and where each of its bound values comes from.
#[derive(Debug)]
pub(crate) struct Template {
    backend: DatabaseBackend,
    sql: String,
    slots: Vec<Slot>,
    arguments: usize,
}

#[derive(Debug)]
enum Slot {
    /// A value the statement always binds (a status, a limit).
    Fixed(Value),
    /// The call's argument at this position.
    Argument(usize),
}

impl Template {
    /// `query` built with `stand_ins` as its arguments: a bound value equal to a stand-in is
    /// that argument, every other value is fixed. Stand-ins must be values no statement
    /// binds otherwise, distinct from each other (the unit tests of each template compare
    /// it with a fresh build for random arguments). The query's text must not depend on an
    /// argument's value: SeaORM's `ColumnTrait::eq` writes `IS NULL` for a NULL, so an
    /// argument that may be absent must not go through it.
    pub fn new(
        backend: DatabaseBackend,
        stand_ins: &[Value],
        query: &impl StatementBuilder,
    ) -> Self {
        let statement = backend.build(query);
        let values = statement.values.map(|values| values.0).unwrap_or_default();
        let slots = values
            .into_iter()
            .map(
                |value| match stand_ins.iter().position(|stand_in| *stand_in == value) {
                    Some(argument) => Slot::Argument(argument),
                    None => Slot::Fixed(value),
                },
            )
            .collect();
        Self {
            backend,
            sql: statement.sql,
            slots,
            arguments: stand_ins.len(),
        }
    }

    /// The statement for these arguments, in the order of the stand-ins. An argument
    /// missing from the list binds NULL (a caller's bug, which the template's tests catch).
    pub fn statement(&self, arguments: &[Value]) -> Statement {
        debug_assert_eq!(arguments.len(), self.arguments, "one value per stand-in");
        let values = self
            .slots
            .iter()
            .map(|slot| match slot {
                Slot::Fixed(value) => value.clone(),
                Slot::Argument(argument) => arguments
                    .get(*argument)
                    .cloned()
                    .unwrap_or(Value::String(None)),
            })
            .collect();
        Statement {
            sql: self.sql.clone(),
            values: Some(Values(values)),
            db_backend: self.backend,
        }
    }
}

/// The `n`th stand-in id: ids no row has (version 4 with a fixed, recognisable prefix).
pub(crate) const fn stand_in_id(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x5747_4e44_0000_4000_8000_0000_0000_0000 | n)
}

/// A stand-in time, distinct from any clock reading of the service.
pub(crate) fn stand_in_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1, 234_567_000).unwrap_or_default()
}

/// One [`Template`] per backend, each built on first use.
pub(crate) struct Templates([OnceLock<Template>; 3]);

impl Templates {
    pub const fn new() -> Self {
        Self([OnceLock::new(), OnceLock::new(), OnceLock::new()])
    }

    /// The template for `backend`, built by `build` the first time it is asked for.
    pub fn get(&self, backend: DatabaseBackend, build: impl FnOnce() -> Template) -> &Template {
        self.cell(backend).get_or_init(build)
    }

    /// As [`Templates::get`], for a template whose build can fail (then nothing is kept).
    pub fn try_get<E>(
        &self,
        backend: DatabaseBackend,
        build: impl FnOnce() -> Result<Template, E>,
    ) -> Result<&Template, E> {
        let cell = self.cell(backend);
        if let Some(template) = cell.get() {
            return Ok(template);
        }
        let template = build()?;
        Ok(cell.get_or_init(|| template))
    }

    fn cell(&self, backend: DatabaseBackend) -> &OnceLock<Template> {
        let slot = match backend {
            DatabaseBackend::Postgres => 0,
            DatabaseBackend::Sqlite => 1,
            _ => 2,
        };
        &self.0[slot]
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement};

    use super::*;

    fn query(name: &str, limit: u64) -> SelectStatement {
        Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("people"))
            .and_where(Expr::col(Alias::new("name")).eq(name))
            .and_where(Expr::col(Alias::new("status")).eq("active"))
            .and_where(Expr::col(Alias::new("nickname")).eq(name))
            .limit(limit)
            .to_owned()
    }

    #[test]
    fn a_template_binds_each_calls_values_where_the_stand_ins_were_and_keeps_the_rest() {
        for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
            let template = Template::new(backend, &["\u{0}name".into()], &query("\u{0}name", 3));
            for name in ["ada", "active", "", "o'brien"] {
                assert_eq!(
                    template.statement(&[name.into()]),
                    backend.build(&query(name, 3)),
                    "{backend:?} {name}"
                );
            }
        }
    }

    #[test]
    fn templates_are_built_once_per_backend() {
        let templates = Templates::new();
        let build = |backend| move || Template::new(backend, &[], &query("x", 1));
        let first = templates.get(DatabaseBackend::Sqlite, build(DatabaseBackend::Sqlite));
        let again = templates.get(DatabaseBackend::Sqlite, || panic!("built twice"));
        assert!(std::ptr::eq(first, again));
        let other = templates.get(DatabaseBackend::Postgres, build(DatabaseBackend::Postgres));
        assert!(other.sql.contains('$') && !first.sql.contains('$'));
    }
}
