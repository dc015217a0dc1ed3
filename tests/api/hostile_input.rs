//! Hostile input gets a clear refusal, never INTERNAL (which would mean a database error or
//! a panic behind it), on either engine.

use tonic::Code;
use usermgmt::grpc::pb;

use crate::helpers::{spawn_app, with_token};

const NASTY: [&str; 6] = [
    "nul\0byte",
    "\u{1b}[31mred",
    "'; DROP TABLE users; --",
    "%_\\",
    "😀👩‍👩‍👧‍👦 ﷽",
    "",
];

#[tokio::test]
async fn hostile_strings_are_refused_or_harmless_but_never_internal() {
    let app = spawn_app().await;
    let account_id = app.account_id.to_string();
    let long = "x".repeat(70_000);
    let mut inputs: Vec<&str> = NASTY.to_vec();
    inputs.push(&long);
    for nasty in inputs {
        let mut users = app.users.clone();
        let mut tokens = app.tokens.clone();
        let outcomes = vec![
            users
                .invite_user(with_token(
                    &app.admin_token,
                    pb::InviteUserRequest {
                        account_id: account_id.clone(),
                        name: nasty.into(),
                        email: format!("{nasty}@example.com"),
                        language: 1,
                        role: 1,
                        cloud_access: None,
                        request_id: Some(nasty.into()),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            users
                .batch_invite_users(with_token(
                    &app.admin_token,
                    pb::BatchInviteUsersRequest {
                        account_id: nasty.into(),
                        requests: vec![pb::InviteUserRequest {
                            account_id: nasty.into(),
                            name: nasty.into(),
                            email: nasty.into(),
                            request_id: Some(nasty.into()),
                            ..Default::default()
                        }],
                    },
                ))
                .await
                .map(drop),
            users
                .list_users(with_token(
                    &app.admin_token,
                    pb::ListUsersRequest {
                        account_id: account_id.clone(),
                        search: nasty.into(),
                        page_token: nasty.into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            users
                .list_users(with_token(
                    &app.admin_token,
                    pb::ListUsersRequest {
                        account_id: account_id.clone(),
                        search: nasty.into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            users
                .get_user(with_token(
                    &app.admin_token,
                    pb::GetUserRequest {
                        account_id: nasty.into(),
                        user_id: nasty.into(),
                    },
                ))
                .await
                .map(drop),
            users
                .accept_invitation(tonic::Request::new(pb::AcceptInvitationRequest {
                    token: nasty.into(),
                    password: Some(nasty.into()),
                }))
                .await
                .map(drop),
            tokens
                .create_api_token(with_token(
                    &app.admin_token,
                    pb::CreateApiTokenRequest {
                        account_id: account_id.clone(),
                        name: nasty.into(),
                        description: nasty.into(),
                        role: 2,
                        expires_at: Some(prost_types::Timestamp {
                            seconds: i64::MAX,
                            nanos: -1,
                        }),
                    },
                ))
                .await
                .map(drop),
            users
                .update_user(with_token(
                    &app.admin_token,
                    pb::UpdateUserRequest {
                        account_id: account_id.clone(),
                        user_id: app.admin_id.to_string(),
                        name: Some(nasty.into()),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            users
                .watch_changes(with_token(
                    &app.admin_token,
                    pb::WatchChangesRequest {
                        account_id: account_id.clone(),
                        start_after: nasty.into(),
                    },
                ))
                .await
                .map(drop),
            users
                .watch_changes(with_token(
                    &app.admin_token,
                    pb::WatchChangesRequest {
                        account_id: nasty.into(),
                        start_after: nasty.into(),
                    },
                ))
                .await
                .map(drop),
        ];
        for (n, outcome) in outcomes.into_iter().enumerate() {
            if let Err(status) = outcome {
                assert!(
                    matches!(status.code(), Code::InvalidArgument | Code::NotFound),
                    "call {n} with {:?}: {status:?}",
                    nasty.chars().take(20).collect::<String>()
                );
            }
        }
    }
}
