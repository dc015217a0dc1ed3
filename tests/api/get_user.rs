use tonic::Code;
use usermgmt::grpc::pb;

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
