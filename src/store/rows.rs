//! Rows to read models: what a stored value means is decided here, once. A value this
//! version cannot read is [`Error::Corrupt`].

use chrono::{DateTime, Utc};

use super::Error;
use super::entity::{api_token, audit_event, membership, user};
use crate::domain::{
    ApiToken, AuditAction, AuditEvent, CloudAccess, Credential, InvitationKind, Language,
    LinkDelivery, Member, MemberStatus, Role,
    member::{InvitedProfile, Profile, visible_profile},
};

/// Stored status of an accepted membership.
pub const ACTIVE: &str = "active";
/// Stored status of a pending membership; it reads EXPIRED once its link has expired.
pub const INVITED: &str = "invited";

pub fn role(stored: i32) -> Result<Role, Error> {
    Role::from_id(stored).ok_or(Error::Corrupt("role"))
}

pub fn language(stored: &str) -> Result<Language, Error> {
    Language::from_code(stored).ok_or(Error::Corrupt("language"))
}

pub fn invitation_kind(stored: &str) -> Result<InvitationKind, Error> {
    InvitationKind::parse(stored).ok_or(Error::Corrupt("invitation kind"))
}

/// The member as their account sees them: what it wrote in the invitation until they
/// accept, their own profile after (R17).
pub fn member(
    membership: membership::Model,
    user: user::Model,
    now: DateTime<Utc>,
) -> Result<Member, Error> {
    let status = MemberStatus::at(
        membership.status == ACTIVE,
        membership.invitation_expires_at,
        now,
    );
    let profile = visible_profile(
        status,
        InvitedProfile {
            name: membership.invited_name,
            language: language(&membership.invited_language)?,
            created_at: membership.created_at,
        },
        Profile {
            name: user.name,
            language: language(&user.language)?,
            two_factor_enabled: user.two_factor_enabled,
            created_at: user.created_at,
        },
    );
    Ok(Member {
        user_id: user.id,
        account_id: membership.account_id,
        email: user.email,
        name: profile.name,
        language: profile.language,
        role: role(membership.role)?,
        cloud_access: CloudAccess::from_text(&membership.cloud_access)
            .ok_or(Error::Corrupt("cloud access"))?,
        status,
        two_factor_enabled: profile.two_factor_enabled,
        created_at: profile.created_at,
        invited_at: membership.invited_at,
        invitation_expires_at: match status {
            MemberStatus::Active => None,
            MemberStatus::Invited | MemberStatus::Expired => membership.invitation_expires_at,
        },
        accepted_at: membership.accepted_at,
        // Read beside the member, from the outbox: see `outbox::deliveries`.
        invitation_delivery: None,
    })
}

pub fn credential(token: &api_token::Model) -> Result<Credential, Error> {
    Ok(Credential {
        token_id: token.id,
        account_id: token.account_id,
        issuer_id: token.issuer_id,
        role: role(token.role)?,
        expires_at: token.expires_at,
        last_used_at: token.last_used_at,
    })
}

pub fn api_token(
    token: api_token::Model,
    issuer: &user::Model,
    issuer_is_member: bool,
    now: DateTime<Utc>,
) -> Result<ApiToken, Error> {
    Ok(ApiToken {
        id: token.id,
        account_id: token.account_id,
        name: token.name,
        description: token.description,
        role: role(token.role)?,
        expires_at: token.expires_at,
        created_at: token.created_at,
        last_used_at: token.last_used_at,
        expired: token.expires_at.is_some_and(|at| at <= now),
        issuer_id: issuer.id,
        issuer_name: issuer.name.clone(),
        issuer_email: issuer.email.clone(),
        issuer_deleted: !issuer_is_member,
    })
}

pub fn audit_event(event: audit_event::Model) -> Result<AuditEvent, Error> {
    Ok(AuditEvent {
        id: event.id,
        account_id: event.account_id,
        actor_id: event.actor_id,
        actor_credential: event.actor_credential,
        action: AuditAction::parse(&event.action).ok_or(Error::Corrupt("audit action"))?,
        target_user_id: event.target_user_id,
        target_token_id: event.target_token_id,
        request_id: event.request_id,
        changes: serde_json::from_str(&event.changes)
            .map_err(|_| Error::Corrupt("audit changes"))?,
        created_at: event.created_at,
        link_delivery: event
            .link_delivery
            .as_deref()
            .map(|stored| LinkDelivery::parse(stored).ok_or(Error::Corrupt("link delivery")))
            .transpose()?,
    })
}
