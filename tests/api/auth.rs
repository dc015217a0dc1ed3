use chrono::TimeDelta;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
};
use tonic::{Code, Request};
use usermgmt::{domain::Role, grpc::pb, store::entity};

use crate::helpers::{invite_request, reason, spawn_app, with_token};

#[tokio::test]
async fn calls_without_a_valid_credential_are_unauthenticated() {
    let app = spawn_app().await;
    let list = || app.list_request();
    let mut client = app.users.clone();

    let none = client.list_users(Request::new(list())).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    assert_eq!(reason(&none), "UNAUTHENTICATED");

    let forged = client
        .list_users(with_token(
            "umk_forged-forged-forged-forged-forged-forged",
            list(),
        ))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);

    for header in [
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
        "Basic YWRtaW46YWRtaW4=",
        "APIKey",
        "garbage",
    ] {
        let mut request = Request::new(list());
        request
            .metadata_mut()
            .insert("authorization", header.parse().unwrap());
        let status = client.list_users(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{header}");
    }

    // Bad input from an unauthenticated caller is not even read.
    let status = client
        .invite_user(Request::new(pb::InviteUserRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn expired_and_deleted_tokens_no_longer_authenticate() {
    let app = spawn_app().await;
    let expiring = app
        .issue_token(
            app.account_id,
            app.admin_id,
            Role::Administrators,
            Some(app.clock_now() + TimeDelta::hours(1)),
        )
        .await;
    assert!(app.list(&expiring, app.list_request()).await.is_ok());
    app.advance(TimeDelta::hours(1));
    assert_eq!(
        app.list(&expiring, app.list_request())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    let token = entity::api_token::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let mut token = token.into_active_model();
    token.deleted_at = Set(Some(app.clock_now()));
    token.update(&app.db).await.unwrap();
    assert_eq!(
        app.list(&app.admin_token, app.list_request())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn another_accounts_administrator_learns_nothing_about_this_account() {
    let app = spawn_app().await;
    let ada = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let (_, _, stranger) = app.other_account("bob@globex.example").await;
    let mut client = app.users.clone();
    let missing_account = uuid::Uuid::now_v7();

    let invite = client
        .invite_user(with_token(
            &stranger,
            invite_request(
                app.account_id,
                "Eve",
                "eve@example.com",
                pb::Role::Administrators,
            ),
        ))
        .await
        .unwrap_err();
    let list = app.list(&stranger, app.list_request()).await.unwrap_err();
    let get = client
        .get_user(with_token(
            &stranger,
            pb::GetUserRequest {
                account_id: app.account_id.to_string(),
                user_id: ada.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    let mut nowhere = app.list_request();
    nowhere.account_id = missing_account.to_string();
    let absent = app.list(&stranger, nowhere).await.unwrap_err();

    for status in [&invite, &list, &get, &absent] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(reason(status), "ACCOUNT_NOT_FOUND");
    }
    assert_eq!(
        list.message().replace(&app.account_id.to_string(), "ID"),
        absent.message().replace(&missing_account.to_string(), "ID")
    );
    assert_eq!(app.count_users().await, 3, "Eve was not created");
}

#[tokio::test]
async fn a_role_change_applies_on_the_very_next_call() {
    let app = spawn_app().await;
    let member = app
        .add_member(
            app.account_id,
            "second@acme.example",
            Role::Administrators,
            Role::Administrators,
        )
        .await;
    let invite = |email: &str| {
        let mut client = app.users.clone();
        let request = with_token(
            &member.token,
            invite_request(app.account_id, "Someone", email, pb::Role::Users),
        );
        async move { client.invite_user(request).await }
    };
    invite("one@example.com").await.unwrap();

    let membership = entity::membership::Entity::find()
        .filter(entity::membership::Column::UserId.eq(member.user_id))
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let mut membership = membership.into_active_model();
    membership.role = Set(Role::Users.id());
    membership.update(&app.db).await.unwrap();

    let status = invite("two@example.com").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}
