//! The integration tests: one binary, the real server on port 0, a fresh database each.

mod auth;
mod get_user;
mod health;
mod helpers;
mod invite_user;
mod list_users;
