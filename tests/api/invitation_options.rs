//! What the inviter chooses per invitation: how long its link works, and whether the
//! service emails it or hands it back.

use chrono::TimeDelta;
use sea_orm::EntityTrait;
use tonic::Code;

use usermgmt::config::RequestedTtl;
use usermgmt::grpc::pb;
use usermgmt::store::entity;

use crate::helpers::{
    TestApp, bad_fields, invite_request, spawn_app, spawn_app_configured, with_token,
};

fn hours(hours: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: hours * 3600,
        nanos: 0,
    })
}

impl TestApp {
    async fn invite_with(
        &self,
        email: &str,
        options: impl FnOnce(&mut pb::InviteUserRequest),
    ) -> Result<pb::InviteUserResponse, tonic::Status> {
        let mut request = invite_request(self.account_id, "Ada", email, pb::Role::Users);
        options(&mut request);
        self.users
            .clone()
            .invite_user(with_token(&self.admin_token, request))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn resend_with(
        &self,
        token: &str,
        user_id: &str,
        options: impl FnOnce(&mut pb::ResendInvitationRequest),
    ) -> Result<pb::ResendInvitationResponse, tonic::Status> {
        let mut request = pb::ResendInvitationRequest {
            account_id: self.account_id.to_string(),
            user_id: user_id.into(),
            ..Default::default()
        };
        options(&mut request);
        self.users
            .clone()
            .resend_invitation(with_token(token, request))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn outbox_rows(&self) -> usize {
        entity::outbox::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
            .len()
    }

    async fn invitation_events(&self) -> Vec<pb::AuditEvent> {
        let mut events = self
            .audit(pb::ListAuditEventsRequest {
                account_id: self.account_id.to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .events;
        events.retain(|event| {
            matches!(
                event.action(),
                pb::AuditAction::UserInvited | pb::AuditAction::InvitationResent
            )
        });
        events
    }
}

/// The `token` parameter of a returned link.
fn token_of(accept_url: &str) -> String {
    let (base, token) = accept_url
        .split_once("?token=")
        .expect("a link with a token");
    assert!(base.starts_with("http"), "{accept_url}");
    token.to_string()
}

#[tokio::test]
async fn a_requested_lifetime_sets_the_expiry_and_a_resend_may_choose_another() {
    let app = spawn_app().await;
    let now = app.clock_now();
    let invited = app
        .invite_with("ada@example.com", |r| r.invitation_ttl = hours(72))
        .await
        .unwrap()
        .user
        .unwrap();
    assert_eq!(
        invited.invitation_expires_at.unwrap().seconds,
        (now + TimeDelta::hours(72)).timestamp()
    );

    app.advance(TimeDelta::minutes(5));
    let resent = app
        .resend_with(&app.admin_token, &invited.id, |r| {
            r.invitation_ttl = hours(1)
        })
        .await
        .unwrap()
        .user
        .unwrap();
    assert_eq!(
        resent.invitation_expires_at.unwrap().seconds,
        (app.clock_now() + TimeDelta::hours(1)).timestamp()
    );
    let defaulted = app.invite("Bob", "bob@example.com", pb::Role::Users).await;
    assert_eq!(
        defaulted.unwrap().invitation_expires_at.unwrap().seconds,
        (app.clock_now() + TimeDelta::hours(24)).timestamp(),
        "absent: the service's default"
    );
}

#[tokio::test]
async fn a_lifetime_out_of_bounds_is_refused_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let too_short = Some(prost_types::Duration {
        seconds: 3599,
        nanos: 0,
    });
    let too_long = Some(prost_types::Duration {
        seconds: 30 * 86_400 + 1,
        nanos: 0,
    });
    let fractional = Some(prost_types::Duration {
        seconds: 7200,
        nanos: 1,
    });
    for ttl in [too_short, too_long, fractional, hours(-2)] {
        let refused = app
            .invite_with("ada@example.com", |r| r.invitation_ttl = ttl)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{ttl:?}");
        assert_eq!(bad_fields(&refused), ["invitation_ttl"], "{ttl:?}");
    }
    assert_eq!(app.count_users().await, 1, "only the administrator exists");
    assert_eq!(app.outbox_rows().await, 0);

    // The bounds themselves are allowed.
    for (email, seconds) in [("lo@example.com", 3600), ("hi@example.com", 30 * 86_400)] {
        let user = app
            .invite_with(email, |r| {
                r.invitation_ttl = Some(prost_types::Duration { seconds, nanos: 0 })
            })
            .await
            .unwrap()
            .user
            .unwrap();
        assert_eq!(
            user.invitation_expires_at.unwrap().seconds,
            app.clock_now().timestamp() + seconds
        );
    }
    let pending = app.invite("Cy", "cy@example.com", pb::Role::Users).await;
    let refused = app
        .resend_with(&app.admin_token, &pending.unwrap().id, |r| {
            r.invitation_ttl = too_long
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&refused), ["invitation_ttl"]);
}

#[tokio::test]
async fn the_settings_narrow_the_lifetimes_callers_may_ask_for() {
    let app = spawn_app_configured(false, |settings| {
        settings.invitations.ttl_min = RequestedTtl::parse("2h").unwrap();
        settings.invitations.ttl_max = RequestedTtl::parse("7days").unwrap();
    })
    .await;
    for refused_hours in [1, 24 * 7 + 1] {
        let refused = app
            .invite_with("ada@example.com", |r| {
                r.invitation_ttl = hours(refused_hours)
            })
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&refused), ["invitation_ttl"]);
        assert!(
            refused.message().contains("between 2h and 7d"),
            "{refused:?}"
        );
    }
    app.invite_with("ada@example.com", |r| r.invitation_ttl = hours(24 * 7))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_link_returned_to_the_caller_is_not_mailed_and_works_once() {
    let app = spawn_app().await;
    let answer = app
        .invite_with("ada@example.com", |r| r.send_email = Some(false))
        .await
        .unwrap();
    let user = answer.user.unwrap();
    assert_eq!(user.status(), pb::UserStatus::Invited);
    assert_eq!(user.invitation_delivery, None, "no email is queued");
    assert_eq!(app.outbox_rows().await, 0);
    let token = token_of(&answer.accept_url);

    // Only the secret's hash is stored.
    let invitations = entity::invitation::Entity::find()
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(invitations.len(), 1);
    assert_ne!(invitations[0].secret_hash, token);
    assert!(!invitations[0].secret_hash.contains(&token));

    // A mailed invitation after it is the only email that arrives.
    let bob = app
        .invite("Bob", "bob@example.com", pb::Role::Users)
        .await
        .unwrap();
    let mails = app.mail.wait_for(1).await;
    assert!(mails[0].to.contains("bob@example.com"), "{:?}", mails[0].to);

    let accepted = app.accept(&token, Some("correct horse")).await.unwrap();
    assert_eq!(accepted.user_id, user.id);
    let again = app.accept(&token, Some("correct horse")).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "the link works once");

    let events = app.invitation_events().await;
    let delivered: Vec<_> = events
        .iter()
        .map(|event| (event.target_user_id.as_str(), event.link_delivery()))
        .collect();
    assert!(delivered.contains(&(user.id.as_str(), pb::LinkDelivery::ReturnedToCaller)));
    assert!(delivered.contains(&(bob.id.as_str(), pb::LinkDelivery::Email)));
}

#[tokio::test]
async fn a_resend_can_return_its_new_link_and_the_old_one_stops_working() {
    let app = spawn_app().await;
    let first = app
        .invite_with("ada@example.com", |r| r.send_email = Some(false))
        .await
        .unwrap();
    let user = first.user.unwrap();
    let old = token_of(&first.accept_url);

    app.advance(TimeDelta::minutes(2));
    let resent = app
        .resend_with(&app.admin_token, &user.id, |r| r.send_email = Some(false))
        .await
        .unwrap();
    let new = token_of(&resent.accept_url);
    assert_ne!(new, old);
    assert_eq!(app.outbox_rows().await, 0, "nothing mailed");
    assert_eq!(
        app.accept(&old, Some("correct horse"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    app.accept(&new, Some("correct horse")).await.unwrap();
    let events = app.invitation_events().await;
    assert!(
        events
            .iter()
            .all(|event| event.link_delivery() == pb::LinkDelivery::ReturnedToCaller),
        "{events:?}"
    );

    // An emailed invitation answers without a link.
    let mailed = app
        .invite_with("bob@example.com", |r| r.send_email = Some(true))
        .await
        .unwrap();
    assert_eq!(mailed.accept_url, "");
    assert_eq!(app.outbox_rows().await, 1);
}

#[tokio::test]
async fn only_administrators_get_links_and_a_repeated_request_does_not_give_it_again() {
    let app = spawn_app().await;
    let pending = app
        .invite("Eve", "eve@example.com", pb::Role::Users)
        .await
        .unwrap();
    let member = app
        .invite_with("mo@example.com", |r| r.send_email = Some(false))
        .await
        .unwrap();
    let member_id = member.user.unwrap().id;
    app.accept(&token_of(&member.accept_url), Some("correct horse"))
        .await
        .unwrap();
    let member_jwt = app.signed_in(&member_id);

    app.advance(TimeDelta::minutes(2));
    let mut request = pb::ResendInvitationRequest {
        account_id: app.account_id.to_string(),
        user_id: pending.id.clone(),
        send_email: Some(false),
        ..Default::default()
    };
    let denied = app
        .users
        .clone()
        .resend_invitation(crate::helpers::with_bearer(&member_jwt, request.clone()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let mut invite = invite_request(app.account_id, "Zed", "zed@example.com", pb::Role::Users);
    invite.send_email = Some(false);
    let denied = app
        .users
        .clone()
        .invite_user(crate::helpers::with_bearer(&member_jwt, invite))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let first = app
        .invite_with("ida@example.com", |r| {
            r.send_email = Some(false);
            r.request_id = Some("ida-1".into());
        })
        .await
        .unwrap();
    assert!(!first.accept_url.is_empty());
    let repeated = app
        .invite_with("ida@example.com", |r| {
            r.send_email = Some(false);
            r.request_id = Some("ida-1".into());
        })
        .await
        .unwrap();
    assert_eq!(repeated.user, first.user);
    assert_eq!(
        repeated.accept_url, "",
        "the secret is not kept to give again"
    );
    let reused = app
        .invite_with("ida@example.com", |r| r.request_id = Some("ida-1".into()))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument, "another request");

    request.send_email = Some(true);
    app.resend_with(&app.admin_token, &pending.id, |r| *r = request)
        .await
        .unwrap();
}
