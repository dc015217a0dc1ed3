use chrono::TimeDelta;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel};
use tonic::Code;
use usermgmt::{
    domain::{ApiTokenSecret, CloudAccess, Role},
    grpc::pb,
    store::entity,
};

use crate::helpers::{bad_fields, reason, spawn_app, with_token};

fn get(account_id: impl ToString, user_id: impl ToString) -> pb::GetUserRequest {
    pb::GetUserRequest {
        account_id: account_id.to_string(),
        user_id: user_id.to_string(),
    }
}

#[tokio::test]
async fn a_member_is_returned_as_listed() {
    let app = spawn_app().await;
    let ada = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let mut got = app
        .users
        .clone()
        .get_user(with_token(&app.admin_token, get(app.account_id, &ada.id)))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    // The email's delivery moves on as the notifier works; the rest is as invited.
    assert!(got.invitation_delivery.take().is_some());
    assert_eq!(
        got,
        pb::User {
            invitation_delivery: None,
            ..ada
        }
    );
}

#[tokio::test]
async fn a_user_outside_the_account_reads_exactly_as_one_that_does_not_exist() {
    let app = spawn_app().await;
    let (_, bob_id, _) = app.other_account("bob@globex.example").await;
    let missing = uuid::Uuid::now_v7();

    let outside = app
        .users
        .clone()
        .get_user(with_token(&app.admin_token, get(app.account_id, bob_id)))
        .await
        .unwrap_err();
    let absent = app
        .users
        .clone()
        .get_user(with_token(&app.admin_token, get(app.account_id, missing)))
        .await
        .unwrap_err();
    assert_eq!(outside.code(), Code::NotFound);
    assert_eq!(absent.code(), Code::NotFound);
    assert_eq!(reason(&outside), reason(&absent));
    assert_eq!(
        outside.message().replace(&bob_id.to_string(), "ID"),
        absent.message().replace(&missing.to_string(), "ID")
    );
}

#[tokio::test]
async fn bad_ids_are_invalid_arguments() {
    let app = spawn_app().await;
    let status = app
        .users
        .clone()
        .get_user(with_token(&app.admin_token, get("not-a-uuid", "")))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["account_id", "user_id"]);
}

#[tokio::test]
async fn a_token_read_with_its_role_and_the_target_is_refused_once_revoked_or_expired() {
    let app = spawn_app().await;
    let ada = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let expiring = app
        .issue_token(
            app.account_id,
            app.admin_id,
            Role::Users,
            Some(app.clock_now() + TimeDelta::hours(1)),
        )
        .await;
    let get_ada = |token: &str| {
        let mut users = app.users.clone();
        let request = with_token(token, get(app.account_id, &ada.id));
        async move { users.get_user(request).await }
    };
    assert_eq!(
        get_ada(&expiring)
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
            .id,
        ada.id
    );
    app.advance(TimeDelta::hours(1));
    let expired = get_ada(&expiring).await.unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated);

    assert!(get_ada(&app.admin_token).await.is_ok());
    for token in entity::api_token::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
    {
        let mut revoked = token.into_active_model();
        revoked.deleted_at = Set(Some(app.clock_now()));
        revoked.update(&app.db).await.unwrap();
    }
    let revoked = get_ada(&app.admin_token).await.unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);
    assert_eq!(reason(&revoked), "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_token_of_another_account_finds_neither_the_account_nor_its_members() {
    let app = spawn_app().await;
    let (other_account, bob_id, bob_token) = app.other_account("bob@globex.example").await;
    // Bob is also an administrator of this account, but his token belongs to his own.
    let now = app.clock_now();
    entity::membership::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        account_id: Set(app.account_id),
        user_id: Set(bob_id),
        role: Set(Role::Administrators.id()),
        cloud_access: Set(CloudAccess::default_for(Role::Administrators).to_text()),
        status: Set("active".into()),
        invited_by: Set(None),
        invited_at: Set(now),
        invitation_expires_at: Set(None),
        accepted_at: Set(Some(now)),
        invited_name: Set("Bob".into()),
        invited_name_lower: Set("bob".into()),
        invited_language: Set("en".into()),
        created_at: Set(now),
    }
    .insert(&app.db)
    .await
    .unwrap();
    let mut users = app.users.clone();
    let status = users
        .get_user(with_token(&bob_token, get(app.account_id, app.admin_id)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason(&status), "ACCOUNT_NOT_FOUND");
    // In its own account the same token reads its members.
    let bob = users
        .get_user(with_token(&bob_token, get(other_account, bob_id)))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(bob.id, bob_id.to_string());
}

#[tokio::test]
async fn a_tokens_role_caps_its_users_role_on_the_reads() {
    let app = spawn_app().await;
    let capped = app
        .issue_token(app.account_id, app.admin_id, Role::Users, None)
        .await;
    let mut users = app.users.clone();
    let me = users
        .get_user(with_token(&capped, get(app.account_id, app.admin_id)))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.role, pb::Role::Administrators as i32);
    let audit = users
        .list_audit_events(with_token(
            &capped,
            pb::ListAuditEventsRequest {
                account_id: app.account_id.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(audit.code(), Code::PermissionDenied);
    assert!(
        users
            .list_audit_events(with_token(
                &app.admin_token,
                pb::ListAuditEventsRequest {
                    account_id: app.account_id.to_string(),
                    ..Default::default()
                },
            ))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_unknown_token_is_refused_before_the_request_is_read() {
    let app = spawn_app().await;
    let unknown = ApiTokenSecret::generate();
    let status = app
        .users
        .clone()
        .get_user(with_token(unknown.expose(), get("not-a-uuid", "")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}
