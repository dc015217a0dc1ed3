use chrono::TimeDelta;
use sea_orm::EntityTrait;
use tonic::Code;
use usermgmt::{domain::Role, grpc::pb, store::entity};

use crate::helpers::{reason, spawn_app, with_token};

#[tokio::test]
async fn a_member_with_a_live_token_cannot_be_removed_until_it_is_deleted() {
    let app = spawn_app().await;
    let member = app
        .add_member(
            app.account_id,
            "m@acme.example",
            Role::Engineers,
            Role::Engineers,
        )
        .await;

    let status = app
        .delete(&app.admin_token, member.user_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "You can't remove the user as they have active tokens."
    );
    assert_eq!(reason(&status), "USER_HAS_ACTIVE_TOKENS");

    let token = app
        .list_tokens(&member.token, None)
        .await
        .unwrap()
        .remove(0);
    app.delete_token(&app.admin_token, &token.id).await.unwrap();
    app.delete(&app.admin_token, member.user_id).await.unwrap();
    let listed = app
        .list(&app.admin_token, app.list_request())
        .await
        .unwrap();
    assert!(
        listed
            .users
            .iter()
            .all(|user| user.id != member.user_id.to_string())
    );
}

#[tokio::test]
async fn expired_tokens_do_not_block_removal_and_still_name_their_deleted_issuer() {
    let app = spawn_app().await;
    let member = app
        .add_member_without_token(app.account_id, "Gone@acme.example", Role::Engineers)
        .await;
    app.issue_token(
        app.account_id,
        member,
        Role::Engineers,
        Some(app.clock_now() + TimeDelta::hours(1)),
    )
    .await;
    assert_eq!(
        app.delete(&app.admin_token, member)
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );

    app.advance(TimeDelta::hours(1));
    app.delete(&app.admin_token, member).await.unwrap();

    let tokens = app
        .list_tokens(&app.admin_token, Some(member.to_string()))
        .await
        .unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].expired);
    let issuer = tokens[0].issuer.clone().unwrap();
    assert_eq!(issuer.email, "gone@acme.example");
    assert_eq!(issuer.name, "Gone@acme.example");
    assert!(issuer.deleted, "the client crosses the issuer out");

    let user = entity::user::Entity::find_by_id(member)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.password_hash.is_none() && !user.activated,
        "they can no longer sign in"
    );
}

#[tokio::test]
async fn removing_a_member_from_one_account_leaves_their_other_accounts() {
    let app = spawn_app().await;
    let (globex, bob, globex_token) = app.other_account("bob@globex.example").await;
    app.invite("Bob", "bob@globex.example", pb::Role::Users)
        .await
        .unwrap();
    let token = app.mail.wait_for(1).await[0].token();
    app.accept(&token, None).await.unwrap();

    app.delete(&app.admin_token, bob).await.unwrap();

    let still = app
        .users
        .clone()
        .get_user(with_token(
            &globex_token,
            pb::GetUserRequest {
                account_id: globex.to_string(),
                user_id: bob.to_string(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(still.status(), pb::UserStatus::Active);
    let user = entity::user::Entity::find_by_id(bob)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(user.activated, "a user with another account still signs in");
}

#[tokio::test]
async fn a_removed_member_may_be_invited_again_and_is_then_a_new_user() {
    let app = spawn_app().await;
    let first = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let token = app.mail.wait_for(1).await[0].token();
    app.accept(&token, Some("first password")).await.unwrap();
    app.delete(&app.admin_token, &first.id).await.unwrap();

    let again = app
        .invite("Ada", "ada@example.com", pb::Role::Engineers)
        .await
        .unwrap();
    assert_eq!(again.id, first.id, "the same user");
    assert_eq!(again.status(), pb::UserStatus::Invited);
    let mails = app.mail.wait_for(2).await;
    assert_eq!(
        mails[1].subject, "You are invited to Acme",
        "the create-a-password email"
    );
    let status = app.accept(&mails[1].token(), None).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "a new password is required"
    );
    app.accept(&mails[1].token(), Some("second password"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pending_invitation_stops_working_when_the_member_is_removed() {
    let app = spawn_app().await;
    let user = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let token = app.mail.wait_for(1).await[0].token();
    app.delete(&app.admin_token, &user.id).await.unwrap();
    assert_eq!(
        app.accept(&token, Some("12345678"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn the_last_administrator_cannot_be_removed() {
    let app = spawn_app().await;
    let status = app
        .delete(&app.admin_token, app.admin_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "LAST_ADMINISTRATOR");
    let missing = app
        .delete(&app.admin_token, uuid::Uuid::now_v7())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}
