//! SeaORM entities: one per table of `migrations/`.

pub mod account;
pub mod account_change_sequence;
pub mod api_token;
pub mod audit_event;
pub mod invitation;
pub mod invite_request;
pub mod member_count;
pub mod membership;
pub mod outbox;
pub mod user;
