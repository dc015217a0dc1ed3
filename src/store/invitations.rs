//! Inviting (R1–R6) and resending (R8): the membership, its invitation (the secret's hash
//! only), the outbox email and the audit event, in one transaction.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, TryIntoModel,
};
use uuid::Uuid;

use super::audit::Event;
use super::entity::{invitation, invite_request, membership, user};
use super::invite_statements::{NewRows, invite_facts, write_rows};
use super::outbox::{self, EmailNames, Invitation};
use super::quota::check_invite_quota;
use super::rows::{self, INVITED};
use super::{Error, Store, lock_account_shared, members};
use crate::domain::{
    Acting, Actor, AuditAction, CloudAccess, Credential, DisplayName, Email, InvitationDelivery,
    InvitationKind, InvitationSecret, Language, LinkDelivery, Member, Role, SecretHash,
    administrators::check_administrator,
    invitation::{ExistingUser, InviteQuota, check_resend, invitation_kind},
    token::effective_role,
};

/// The caller's `request_id` of an invitation (AIP-155) and a hash of what it asked.
pub struct InviteRequestId {
    pub request_id: String,
    pub request_hash: String,
}

pub struct NewInvitation<'a> {
    pub account_id: Uuid,
    pub email: &'a Email,
    pub name: &'a DisplayName,
    pub language: Language,
    pub role: Role,
    pub cloud_access: &'a CloudAccess,
    pub secret: &'a InvitationSecret,
    pub expires_at: DateTime<Utc>,
    pub request: Option<InviteRequestId>,
    /// Queue the invitation's email; without it the link goes back to the caller.
    pub send_email: bool,
    /// The account's invitation quota, if any.
    pub quota: Option<InviteQuota>,
}

/// A resend's new link.
pub struct Renewal<'a> {
    pub secret: &'a InvitationSecret,
    pub expires_at: DateTime<Utc>,
    /// Queue the email; without it the link goes back to the caller.
    pub send_email: bool,
    /// The account's invitation quota, if any.
    pub quota: Option<InviteQuota>,
}

/// Who invites.
#[derive(Debug)]
pub enum Inviter<'a> {
    /// An actor whose credential was checked when the call began (an API token's is checked
    /// again, under the account's lock).
    Actor(Actor),
    /// An API token not looked up yet: the invitation's facts find it by its secret's hash,
    /// under the account's lock, and its issuer acts with it.
    ApiToken {
        hash: &'a SecretHash,
        /// The call's `x-request-id` (or one assigned).
        request_id: &'a str,
        now: DateTime<Utc>,
    },
}

impl Inviter<'_> {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Inviter::Actor(actor) => actor.now,
            Inviter::ApiToken { now, .. } => *now,
        }
    }
}

/// What an invitation's transaction did, and the API token its facts found for an
/// [`Inviter::ApiToken`], whatever the outcome (its use is recorded either way).
pub struct InviteAttempt {
    pub outcome: Result<Invited, Error>,
    pub token: Option<Credential>,
}

/// What an invitation did.
#[derive(Debug)]
pub enum Invited {
    /// A new invitation, and the kind of email queued for it.
    Created {
        member: Member,
        kind: InvitationKind,
    },
    /// The same `request_id` and request were seen before: the member it invited.
    Repeated(Member),
}

impl Store {
    /// Invites the email into the account, creating its user when it has none (R3) and
    /// reusing it when it has (R4).
    pub async fn invite(&self, new: &NewInvitation<'_>, inviter: Inviter<'_>) -> InviteAttempt {
        let mut token = None;
        let outcome = self.invite_in_transaction(new, inviter, &mut token).await;
        InviteAttempt { outcome, token }
    }

    /// [`Store::invite`]; `found` gets the API token an [`Inviter::ApiToken`] presented, once
    /// the facts have found it.
    #[tracing::instrument(skip_all, fields(otel.name = "db.transaction invite", account_id = %new.account_id), err(level = "info"))]
    async fn invite_in_transaction(
        &self,
        new: &NewInvitation<'_>,
        inviter: Inviter<'_>,
        found: &mut Option<Credential>,
    ) -> Result<Invited, Error> {
        let tx = self.begin_write().await?;
        lock_account_shared(&tx, new.account_id).await?;
        let mut facts = invite_facts(
            &tx,
            new.account_id,
            new.email,
            new.request.as_ref(),
            &inviter,
        )
        .await?
        .ok_or(Error::AccountNotFound(new.account_id))?;
        if !facts.token_live {
            return Err(Error::CredentialRevoked);
        }
        let actor = match inviter {
            Inviter::Actor(actor) => actor,
            Inviter::ApiToken {
                request_id, now, ..
            } => {
                let token = facts.token.take().ok_or(Error::CredentialRevoked)?;
                *found = Some(token);
                Actor::new(token.issuer_id, Acting::ApiToken(token), request_id, now)
            }
        };
        let actor = &actor;
        if !actor.acting.works_in(new.account_id) {
            return Err(Error::AccountNotFound(new.account_id));
        }
        let member_role = facts
            .member_role
            .ok_or(Error::AccountNotFound(new.account_id))?;
        check_administrator(
            effective_role(member_role, actor.acting.role_ceiling()),
            "invite users",
        )?;
        if let Some(request) = &new.request
            && let Some(first) = facts.first_request
        {
            if first.request_hash != request.request_hash {
                return Err(Error::RequestIdReused);
            }
            let (membership, user) = members::get(&tx, first.account_id, first.user_id).await?;
            return Ok(Invited::Repeated(
                members::read(&tx, membership, user, actor.now).await?,
            ));
        }
        let kind = invitation_kind(
            new.account_id,
            facts
                .existing
                .as_ref()
                .map(|(user, member_of_account)| ExistingUser {
                    user_id: user.id,
                    activated: user.activated,
                    member_of_account: *member_of_account,
                }),
        )?;
        let mut new_rows = NewRows::default();
        let (user, invitee_own) = match facts.existing {
            Some((user, _)) => {
                let own = (user.name.clone(), rows::language(&user.language)?);
                (user, Some(own))
            }
            None => {
                let user = new_user(new, actor.now);
                new_rows.push(user.clone());
                (user.try_into_model()?, None)
            }
        };
        let membership = new_membership(new, user.id, actor);
        new_rows.push(membership.clone());
        let membership = membership.try_into_model()?;
        let invitation_id = Uuid::now_v7();
        new_rows.push(new_invitation(
            invitation_id,
            membership.id,
            kind,
            new.secret,
            new.expires_at,
            actor.now,
        ));
        let user_id = user.id;
        let mut member = rows::member(membership, user, actor.now)?;
        if new.send_email {
            let email = outbox::invitation_email(
                &Invitation {
                    invitation_id,
                    invitee: &member,
                    kind,
                    secret: new.secret,
                    expires_at: new.expires_at,
                    now: actor.now,
                },
                EmailNames {
                    account_name: facts.account_name,
                    inviter_name: facts.inviter_name,
                    invitee_own,
                },
            )?;
            new_rows.push(email);
        }
        if let Some(request) = &new.request {
            let remembered = invite_request::ActiveModel {
                caller_id: Set(actor.user_id),
                request_id: Set(request.request_id.clone()),
                request_hash: Set(request.request_hash.clone()),
                account_id: Set(new.account_id),
                user_id: Set(user_id),
                created_at: Set(actor.now),
            };
            new_rows.push(remembered);
        }
        write_rows(&tx, new_rows).await?;
        if new.send_email {
            member.invitation_delivery = Some(InvitationDelivery::queued());
        }
        Event::new(actor, new.account_id, AuditAction::UserInvited)
            .user(user_id)
            .link(LinkDelivery::when_sending(new.send_email))
            .record(&tx)
            .await?;
        check_invite_quota(&tx, new.account_id, new.quota, actor.now).await?;
        tx.commit().await?;
        Ok(Invited::Created { member, kind })
    }

    /// Replaces the member's pending invitation with a new one: new secret, new expiry, the
    /// same kind of email; the old link stops working and its unsent email is retired.
    #[tracing::instrument(skip_all, fields(otel.name = "db.transaction resend", %account_id, %user_id), err(level = "info"))]
    pub async fn resend(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        renewal: &Renewal<'_>,
        actor: &Actor,
    ) -> Result<Member, Error> {
        let Renewal {
            secret,
            expires_at,
            send_email,
            quota,
        } = *renewal;
        let now = actor.now;
        let tx = self.begin_write().await?;
        lock_account_shared(&tx, account_id).await?;
        check_administrator(
            members::acting_role(&tx, account_id, actor).await?,
            "resend invitations",
        )?;
        // Another resend or an accept of the same member waits, or is waited for: the
        // second resend is refused as too soon, and a resend never mails a live link to a
        // member who has just accepted.
        let (membership, user) = members::get_locked(&tx, account_id, user_id).await?;
        let member = rows::member(membership.clone(), user.clone(), now)?;
        let previous = invitation::Entity::find()
            .filter(invitation::Column::MembershipId.eq(membership.id))
            .order_by_desc(invitation::Column::CreatedAt)
            .all(&tx)
            .await?;
        check_resend(
            &member,
            previous.first().map(|latest| latest.created_at),
            now,
        )?;
        let kind = match previous.first() {
            Some(latest) => rows::invitation_kind(&latest.kind)?,
            None => InvitationKind::NewUser,
        };
        let previous_ids: Vec<Uuid> = previous.iter().map(|old| old.id).collect();
        invitation::Entity::delete_many()
            .filter(invitation::Column::MembershipId.eq(membership.id))
            .exec(&tx)
            .await?;
        outbox::retire_for_invitations(
            &tx,
            &previous_ids,
            crate::domain::delivery::LinkGone::Superseded,
            now,
        )
        .await?;
        let invitation_id =
            insert_invitation(&tx, membership.id, kind, secret, expires_at, now).await?;
        let mut renewed = membership.into_active_model();
        renewed.invited_at = Set(now);
        renewed.invitation_expires_at = Set(Some(expires_at));
        renewed.invited_by = Set(Some(actor.user_id));
        let membership = renewed.update(&tx).await?;
        let invitee_own = Some((user.name.clone(), rows::language(&user.language)?));
        let mut member = rows::member(membership, user, now)?;
        if send_email {
            let delivery = outbox::enqueue_invitation(
                &tx,
                actor.user_id,
                &Invitation {
                    invitation_id,
                    invitee: &member,
                    kind,
                    secret,
                    expires_at,
                    now,
                },
                invitee_own,
            )
            .await?;
            member.invitation_delivery = Some(delivery);
        }
        Event::new(actor, account_id, AuditAction::InvitationResent)
            .user(user_id)
            .link(LinkDelivery::when_sending(send_email))
            .record(&tx)
            .await?;
        check_invite_quota(&tx, account_id, quota, now).await?;
        tx.commit().await?;
        Ok(member)
    }
}

fn new_user(new: &NewInvitation<'_>, now: DateTime<Utc>) -> user::ActiveModel {
    user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(new.email.to_string()),
        name: Set(new.name.as_str().to_string()),
        name_lower: Set(new.name.as_str().to_lowercase()),
        language: Set(new.language.code().to_string()),
        password_hash: Set(None),
        activated: Set(false),
        two_factor_enabled: Set(false),
        created_at: Set(now),
    }
}

fn new_membership(
    new: &NewInvitation<'_>,
    user_id: Uuid,
    actor: &Actor,
) -> membership::ActiveModel {
    membership::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(new.account_id),
        user_id: Set(user_id),
        role: Set(new.role.id()),
        cloud_access: Set(new.cloud_access.to_text()),
        status: Set(INVITED.to_string()),
        invited_by: Set(Some(actor.user_id)),
        invited_at: Set(actor.now),
        invitation_expires_at: Set(Some(new.expires_at)),
        accepted_at: Set(None),
        invited_name: Set(new.name.as_str().to_string()),
        invited_name_lower: Set(new.name.as_str().to_lowercase()),
        invited_language: Set(new.language.code().to_string()),
        created_at: Set(actor.now),
    }
}

fn new_invitation(
    id: Uuid,
    membership_id: Uuid,
    kind: InvitationKind,
    secret: &InvitationSecret,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> invitation::ActiveModel {
    invitation::ActiveModel {
        id: Set(id),
        membership_id: Set(membership_id),
        secret_hash: Set(secret.hash().into_string()),
        kind: Set(kind.as_str().to_string()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        consumed_at: Set(None),
    }
}

async fn insert_invitation(
    db: &impl ConnectionTrait,
    membership_id: Uuid,
    kind: InvitationKind,
    secret: &InvitationSecret,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Uuid, DbErr> {
    let id = Uuid::now_v7();
    new_invitation(id, membership_id, kind, secret, expires_at, now)
        .insert(db)
        .await?;
    Ok(id)
}
