//! The integration tests: one binary, the real server on port 0, a fresh database each.

mod api_tokens;
mod audit;
mod auth;
mod authorization;
mod bootstrap;
mod credentials;
mod delete_user;
mod delivery;
mod delivery_handover;
mod delivery_relays;
mod get_user;
mod hardening;
mod health;
mod helpers;
mod hostile_input;
mod invitations;
mod invite_user;
mod jwt_idp;
mod limits;
mod list_users;
mod notifier_faults;
mod privacy;
mod query_plans;
mod smtp_tls;
mod update_user;
