//! Proto ↔ domain. Requests are destructured field by field, so a new proto field does not
//! compile until this module decides what it means.

mod audit;
mod cloud_access;
mod tokens;
mod users;

pub use audit::{audit_event, list_audit, watch, watched};
pub use tokens::{create_token, delete_token, list_tokens, token};
pub use users::{accept, batch_invite, delete, get, invite, list, resend, update, user};

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::pb;
use crate::domain::{Language, Role};
use crate::service::ListQuery;

pub fn uuid(raw: &str) -> Result<Uuid, String> {
    if raw.trim().is_empty() {
        return Err("is required".into());
    }
    Uuid::try_parse(raw.trim()).map_err(|_| "is not a UUID".to_string())
}

fn required_enum<P, T>(raw: i32, unspecified: P, convert: impl Fn(P) -> T) -> Result<T, String>
where
    P: TryFrom<i32> + PartialEq,
{
    match P::try_from(raw) {
        Ok(value) if value == unspecified => Err("is required".into()),
        Ok(value) => Ok(convert(value)),
        Err(_) => Err(format!("has an unknown value {raw}")),
    }
}

fn language(raw: i32) -> Result<Language, String> {
    required_enum(raw, pb::Language::Unspecified, |language| match language {
        pb::Language::En | pb::Language::Unspecified => Language::En,
        pb::Language::De => Language::De,
        pb::Language::Zh => Language::Zh,
        pb::Language::Ru => Language::Ru,
    })
}

fn role(raw: i32) -> Result<Role, String> {
    // The proto's values are the provider's role ids.
    required_enum(raw, pb::Role::Unspecified, |role| role as i32)
        .and_then(|id| Role::from_id(id).ok_or_else(|| format!("has an unknown value {raw}")))
}

fn page_size(raw: i32) -> Result<u64, String> {
    match raw {
        ..0 => Err("must not be negative".to_string()),
        0 => Ok(ListQuery::DEFAULT_PAGE_SIZE),
        size => Ok((size as u64).min(ListQuery::MAX_PAGE_SIZE)),
    }
}

/// A link returned to the caller, or empty.
pub fn returned_link(link: Option<SecretString>) -> String {
    link.map(|link| link.expose_secret().to_string())
        .unwrap_or_default()
}

/// A lifetime in whole seconds; its range is the service's to check.
fn lifetime(raw: Option<prost_types::Duration>) -> Result<Option<TimeDelta>, String> {
    let Some(duration) = raw else {
        return Ok(None);
    };
    if duration.nanos != 0 {
        return Err("must be a whole number of seconds".into());
    }
    if duration.seconds <= 0 {
        return Err("must be positive".into());
    }
    TimeDelta::try_seconds(duration.seconds)
        .map(Some)
        .ok_or_else(|| "is far too long".into())
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn optional_id(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}
