//! Database migrations of usermgmt. They use only `sea_query`, never the service's entities,
//! so old migrations keep compiling when the entities change. Every migration runs on both
//! SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_create_accounts_and_users;
mod m20261128_000002_create_memberships_and_invitations;
mod m20261128_000003_create_api_tokens_and_outbox;
mod m20261128_000004_create_invite_requests;
mod m20261128_000005_create_audit_events;
mod m20261129_000006_index_outbox_claim;
mod m20261129_000007_search_trigram_indexes;
mod m20261130_000008_add_membership_invited_profile;
mod m20261130_000009_add_audit_actor_credential;
mod m20261130_000010_add_outbox_lease;
mod m20261130_000011_add_outbox_trace_context;
mod m20261130_000012_create_member_counts;
mod m20261130_000013_create_member_search;
mod m20261201_000014_add_audit_link_delivery;
mod m20261201_000015_index_audit_invitations;
mod m20261201_000016_add_audit_change_sequence;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_accounts_and_users::Migration),
            Box::new(m20261128_000002_create_memberships_and_invitations::Migration),
            Box::new(m20261128_000003_create_api_tokens_and_outbox::Migration),
            Box::new(m20261128_000004_create_invite_requests::Migration),
            Box::new(m20261128_000005_create_audit_events::Migration),
            Box::new(m20261129_000006_index_outbox_claim::Migration),
            Box::new(m20261129_000007_search_trigram_indexes::Migration),
            Box::new(m20261130_000008_add_membership_invited_profile::Migration),
            Box::new(m20261130_000009_add_audit_actor_credential::Migration),
            Box::new(m20261130_000010_add_outbox_lease::Migration),
            Box::new(m20261130_000011_add_outbox_trace_context::Migration),
            Box::new(m20261130_000012_create_member_counts::Migration),
            Box::new(m20261130_000013_create_member_search::Migration),
            Box::new(m20261201_000014_add_audit_link_delivery::Migration),
            Box::new(m20261201_000015_index_audit_invitations::Migration),
            Box::new(m20261201_000016_add_audit_change_sequence::Migration),
        ]
    }
}
