//! Credential ceilings and races: what a limited credential may mint, see and delete, what
//! the audit trail records of the credential that acted, and permission checks that hold
//! when a change of roles races the call they guard.

use chrono::TimeDelta;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Code;
use usermgmt::{
    domain::{Acting, Actor, InvitationEmail, Role, TokenGrant, TokenLimits},
    grpc::pb,
    store::{NewToken, Store, entity},
};

use crate::helpers::{JWT_SECRET, reason, spawn_app, spawn_app_with, with_bearer};

#[tokio::test]
async fn a_token_minted_with_an_expiring_token_expires_no_later_than_it() {
    let app = spawn_app().await;
    let hour = app.clock_now() + TimeDelta::hours(1);
    let expiring = app
        .issue_token(app.account_id, app.admin_id, Role::Engineers, Some(hour))
        .await;

    for asked in [None, Some(hour + TimeDelta::seconds(1))] {
        let refused = app
            .create_token(&expiring, pb::Role::Users, asked)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{asked:?}");
        assert_eq!(reason(&refused), "EXPIRY_ABOVE_CREDENTIAL");
    }
    let (within, _) = app
        .create_token(&expiring, pb::Role::Users, Some(hour))
        .await
        .unwrap();
    assert_eq!(within.expires_at.unwrap().seconds, hour.timestamp());
    // A permanent token, or a signed-in member, may still mint permanent tokens.
    app.create_token(&app.admin_token, pb::Role::Users, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_sees_and_deletes_no_token_above_its_role() {
    let app = spawn_app().await;
    let lower = app
        .issue_token(app.account_id, app.admin_id, Role::Engineers, None)
        .await;
    let all = app.list_tokens(&app.admin_token, None).await.unwrap();
    let bootstrap = all
        .iter()
        .find(|token| token.role() == pb::Role::Administrators)
        .expect("the bootstrap token")
        .clone();

    let seen = app.list_tokens(&lower, None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(seen.len(), 1, "only the Engineers token itself");
    assert!(seen.iter().all(|token| token.id != bootstrap.id));

    let refused = app.delete_token(&lower, &bootstrap.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    // It still works.
    app.list_tokens(&app.admin_token, None).await.unwrap();
}

#[tokio::test]
async fn audit_events_name_the_credential_that_acted() {
    let app = spawn_app().await;
    let bootstrap = app.list_tokens(&app.admin_token, None).await.unwrap()[0].clone();
    let (by_token, _) = app
        .create_token(&app.admin_token, pb::Role::Users, None)
        .await
        .unwrap();
    let create_with_bearer = |bearer: String, name: &'static str| {
        let mut tokens = app.tokens.clone();
        let account_id = app.account_id.to_string();
        async move {
            tokens
                .create_api_token(with_bearer(
                    &bearer,
                    pb::CreateApiTokenRequest {
                        account_id,
                        name: name.into(),
                        role: pb::Role::Users as i32,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .token
                .unwrap()
        }
    };
    let by_jwt = create_with_bearer(app.signed_in(app.admin_id), "signed in").await;
    let with_jti = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({
            "sub": app.admin_id.to_string(),
            "exp": (app.clock_now() + TimeDelta::hours(1)).timestamp(),
            "jti": "login-42",
        }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let by_jti = create_with_bearer(with_jti, "signed in, with jti").await;

    let events = app
        .audit(pb::ListAuditEventsRequest {
            account_id: app.account_id.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .events;
    let credential_of = |token_id: &str| {
        events
            .iter()
            .find(|event| event.target_token_id == token_id)
            .map(|event| (event.actor_user_id.clone(), event.actor_credential.clone()))
            .expect("the token's event")
    };
    assert_eq!(
        credential_of(&by_token.id),
        (
            app.admin_id.to_string(),
            format!("api_token:{}", bootstrap.id)
        )
    );
    assert_eq!(
        credential_of(&by_jwt.id),
        (app.admin_id.to_string(), "jwt".to_string())
    );
    assert_eq!(
        credential_of(&by_jti.id),
        (app.admin_id.to_string(), "jwt:login-42".to_string())
    );
}

/// A member's token creation and their demotion, run together: one of them wins, never
/// both (a token above its member's role would outlive the demotion).
#[tokio::test]
async fn a_demotion_racing_a_token_creation_never_leaves_a_token_above_the_role() {
    let app = spawn_app().await;
    for round in 0..6 {
        let member = app
            .add_member_without_token(
                app.account_id,
                &format!("racer{round}@acme.example"),
                Role::Engineers,
            )
            .await;
        let member_jwt = app.signed_in(member);
        let mut demote = app.update_request(member);
        demote.role = Some(pb::Role::Users as i32);
        let create = async {
            app.tokens
                .clone()
                .create_api_token(with_bearer(
                    &member_jwt,
                    pb::CreateApiTokenRequest {
                        account_id: app.account_id.to_string(),
                        name: "race".into(),
                        role: pb::Role::Engineers as i32,
                        ..Default::default()
                    },
                ))
                .await
        };
        let (created, demoted) = tokio::join!(create, app.update(&app.admin_token, demote));
        assert!(
            created.is_ok() != demoted.is_ok(),
            "round {round}: exactly one wins; created {:?}, demoted {:?}",
            created.as_ref().map(drop),
            demoted.as_ref().map(drop)
        );
    }
}

/// A resend and an accept of one invitation, run together: never a live link for a member
/// who has accepted.
#[tokio::test]
async fn a_resend_racing_an_accept_never_leaves_a_live_link_for_an_active_member() {
    let app = spawn_app_with(false).await;
    for round in 0..4 {
        let invited = app
            .invite(
                "Racer",
                &format!("racer{round}@example.com"),
                pb::Role::Users,
            )
            .await
            .unwrap();
        let email = entity::outbox::Entity::find()
            .filter(entity::outbox::Column::SentAt.is_null())
            .filter(entity::outbox::Column::DeadAt.is_null())
            .all(&app.db)
            .await
            .unwrap()
            .into_iter()
            .find_map(|row| {
                let message: InvitationEmail = serde_json::from_str(&row.payload).ok()?;
                (message.to == format!("racer{round}@example.com")).then_some(message)
            })
            .expect("the invitation's email");
        let secret = email.secret.expect("a live link");
        app.advance(TimeDelta::minutes(2));

        let (accepted, resent) = tokio::join!(
            app.accept(&secret, Some("a long secret password")),
            app.resend(&invited.id)
        );
        assert!(
            accepted.is_ok() != resent.is_ok(),
            "round {round}: exactly one wins"
        );
        let membership = entity::membership::Entity::find()
            .filter(
                entity::membership::Column::UserId.eq(invited.id.parse::<uuid::Uuid>().unwrap()),
            )
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        let live_links = entity::invitation::Entity::find()
            .filter(entity::invitation::Column::MembershipId.eq(membership.id))
            .filter(entity::invitation::Column::ConsumedAt.is_null())
            .all(&app.db)
            .await
            .unwrap();
        if let Err(refused) = accepted {
            assert_eq!(refused.code(), Code::NotFound);
            assert_eq!(membership.status, "invited");
            assert_eq!(live_links.len(), 1, "round {round}: the resent link");
        } else {
            assert_eq!(membership.status, "active");
            assert!(live_links.is_empty(), "round {round}: no live link is left");
        }
    }
}

/// A token deleted while its call waited for the account's lock does not act: the store
/// asks again, inside the transaction, whether the calling token still lives.
#[tokio::test]
async fn a_token_revoked_before_its_write_runs_does_not_act() {
    let app = spawn_app().await;
    let secret = app
        .issue_token(app.account_id, app.admin_id, Role::Administrators, None)
        .await;
    let hash = usermgmt::domain::SecretHash::of(&secret);
    let store = Store::new(app.db.clone());
    let credential = store
        .credential(&hash, app.clock_now())
        .await
        .unwrap()
        .expect("the token lives");
    let actor = Actor::new(
        app.admin_id,
        Acting::ApiToken(credential),
        "test",
        app.clock_now(),
    );
    let listed = app.list_tokens(&app.admin_token, None).await.unwrap();
    let revoked = listed
        .iter()
        .find(|token| token.id == credential.token_id.to_string())
        .expect("listed");
    app.delete_token(&app.admin_token, &revoked.id)
        .await
        .unwrap();

    let secret = usermgmt::domain::ApiTokenSecret::generate();
    let new = NewToken {
        account_id: app.account_id,
        name: "after revocation",
        description: "",
        grant: TokenGrant {
            role: Role::Users,
            expires_at: None,
        },
        secret: &secret,
    };
    let refused = store
        .create_token(&new, TokenLimits::default(), &actor)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, usermgmt::store::Error::CredentialRevoked),
        "{refused:?}"
    );
}

/// An accept and a removal of the same member, run together, never deadlock: both take the
/// account's lock before the membership's.
#[tokio::test]
async fn an_accept_racing_a_removal_ends_cleanly() {
    let app = spawn_app_with(false).await;
    for round in 0..4 {
        let email = format!("leaving{round}@example.com");
        let invited = app
            .invite("Leaving", &email, pb::Role::Users)
            .await
            .unwrap();
        let secret = entity::outbox::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .into_iter()
            .find_map(|row| {
                let message: InvitationEmail = serde_json::from_str(&row.payload).ok()?;
                (message.to == email).then_some(message.secret).flatten()
            })
            .expect("the link");
        let (accepted, removed) = tokio::join!(
            app.accept(&secret, Some("a long secret password")),
            app.delete(&app.admin_token, &invited.id)
        );
        for status in [accepted.err(), removed.err()].into_iter().flatten() {
            assert!(
                matches!(status.code(), Code::NotFound | Code::FailedPrecondition),
                "round {round}: {status:?}"
            );
        }
    }
}
