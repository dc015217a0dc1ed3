//! The small holes closed: SMTP credentials never travel in clear to another machine, a
//! wrong or expired invitation secret is an INFO line without the secret, and settings are
//! refused at start when they are out of bounds.

mod clear_relay;
mod refusal_logs;
mod settings;
mod smtp_auth;
