//! BatchInviteUsers: each row as InviteUser would carry it out, answered in order.

use chrono::TimeDelta;
use sea_orm::{EntityTrait, PaginatorTrait};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use usermgmt::config::QuotaSetting;
use usermgmt::domain::invitation::InviteQuota;
use usermgmt::grpc::pb::{self, batch_invite_result::Result as Row};
use usermgmt::store::entity;

use crate::helpers::{
    TestApp, bad_fields, invite_request, spawn_app, spawn_app_configured, with_bearer, with_token,
};

fn row(app: &TestApp, email: &str) -> pb::InviteUserRequest {
    let mut request = invite_request(app.account_id, "Someone", email, pb::Role::Users);
    request.account_id = String::new();
    request
}

impl TestApp {
    async fn batch(
        &self,
        requests: Vec<pb::InviteUserRequest>,
    ) -> Result<Vec<pb::BatchInviteResult>, Status> {
        self.users
            .clone()
            .batch_invite_users(with_token(
                &self.admin_token,
                pb::BatchInviteUsersRequest {
                    account_id: self.account_id.to_string(),
                    requests,
                },
            ))
            .await
            .map(|answer| answer.into_inner().results)
    }

    async fn outbox_count(&self) -> u64 {
        entity::outbox::Entity::find()
            .count(&self.db)
            .await
            .unwrap()
    }
}

fn user(result: &pb::BatchInviteResult) -> &pb::User {
    match &result.result {
        Some(Row::User(user)) => user,
        other => panic!("expected a user, got {other:?}"),
    }
}

/// The row's error as the status InviteUser would have answered.
fn error(result: &pb::BatchInviteResult) -> Status {
    match &result.result {
        Some(Row::Error(status)) => {
            let encoded = prost::Message::encode_to_vec(status);
            Status::with_details(
                Code::from_i32(status.code),
                status.message.clone(),
                encoded.into(),
            )
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

fn error_reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_mixed_batch_answers_each_row_in_order_as_invite_user_would() {
    let app = spawn_app().await;
    let existing = app
        .invite("Bea", "bea@example.com", pb::Role::Users)
        .await
        .unwrap();
    let mut bad = row(&app, "not-an-email");
    bad.role = 0;
    let mut elsewhere = row(&app, "eli@example.com");
    elsewhere.account_id = uuid::Uuid::now_v7().to_string();
    let mut silent = row(&app, "sid@example.com");
    silent.send_email = Some(false);
    let results = app
        .batch(vec![
            row(&app, "ada@example.com"),
            bad.clone(),
            row(&app, "ADA@example.com"),
            row(&app, "bea@example.com"),
            elsewhere,
            silent,
            row(&app, "cy@example.com"),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 7);

    let ada = user(&results[0]);
    assert_eq!(ada.email, "ada@example.com");
    assert_eq!(ada.status(), pb::UserStatus::Invited);

    // The bad row's status is the one InviteUser gives for the same request.
    let alone = app
        .users
        .clone()
        .invite_user(with_token(&app.admin_token, {
            let mut request = bad;
            request.account_id = app.account_id.to_string();
            request
        }))
        .await
        .unwrap_err();
    let in_batch = error(&results[1]);
    assert_eq!(in_batch.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&in_batch), bad_fields(&alone));
    assert_eq!(bad_fields(&in_batch), ["email", "role"]);

    // A repeat inside the batch and an existing member: ALREADY_EXISTS naming the member.
    for (index, invited) in [(2, ada.id.as_str()), (3, existing.id.as_str())] {
        let status = error(&results[index]);
        assert_eq!(status.code(), Code::AlreadyExists, "row {index}");
        assert_eq!(error_reason(&status), "ALREADY_INVITED");
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.metadata["user_id"], invited, "row {index}");
    }
    assert_eq!(bad_fields(&error(&results[4])), ["account_id"]);
    let sid = &results[5];
    assert!(sid.accept_url.contains("token="), "{sid:?}");
    assert_eq!(user(&results[6]).email, "cy@example.com");

    // Emails for the mailed rows only, through the outbox: Bea's, Ada's and Cy's.
    assert_eq!(app.outbox_count().await, 3);
    assert_eq!(app.count_users().await, 1 + 4);
}

#[tokio::test]
async fn rows_with_a_request_id_are_idempotent() {
    let app = spawn_app().await;
    let with_id = |email: &str, id: &str| {
        let mut request = row(&app, email);
        request.request_id = Some(id.into());
        request
    };
    let first = app
        .batch(vec![
            with_id("ada@example.com", "r-ada"),
            with_id("bob@example.com", "r-bob"),
        ])
        .await
        .unwrap();
    let again = app
        .batch(vec![
            with_id("ada@example.com", "r-ada"),
            with_id("bob@example.com", "r-bob"),
        ])
        .await
        .unwrap();
    assert_eq!(user(&again[0]).id, user(&first[0]).id);
    assert_eq!(user(&again[1]).id, user(&first[1]).id);
    assert_eq!(app.outbox_count().await, 2, "no second email");

    // A request_id reused by a later row with another request: that later row is refused,
    // as a second InviteUser call would be, whichever order the rows' transactions take.
    let reused = app
        .batch(vec![
            with_id("cy@example.com", "r-cy"),
            with_id("dee@example.com", "r-cy"),
        ])
        .await
        .unwrap();
    assert_eq!(user(&reused[0]).email, "cy@example.com");
    assert_eq!(error(&reused[1]).code(), Code::InvalidArgument);
}

#[tokio::test]
async fn the_batch_is_bounded_and_only_administrators_may_send_one() {
    let app = spawn_app().await;
    for rows in [0, 101] {
        let requests = (0..rows)
            .map(|n| row(&app, &format!("p{n}@example.com")))
            .collect();
        let refused = app.batch(requests).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{rows} rows");
        assert_eq!(bad_fields(&refused), ["requests"]);
    }
    let hundred = (0..100)
        .map(|n| row(&app, &format!("p{n}@example.com")))
        .collect();
    let results = app.batch(hundred).await.unwrap();
    assert!(
        results
            .iter()
            .all(|result| matches!(result.result, Some(Row::User(_))))
    );

    let mut joining = row(&app, "mo@example.com");
    joining.send_email = Some(false);
    let joined = app.batch(vec![joining]).await.unwrap();
    let token = joined[0]
        .accept_url
        .split_once("token=")
        .unwrap()
        .1
        .to_string();
    app.accept(&token, Some("correct horse")).await.unwrap();
    let denied = app
        .users
        .clone()
        .batch_invite_users(with_bearer(
            &app.signed_in(&user(&joined[0]).id),
            pb::BatchInviteUsersRequest {
                account_id: app.account_id.to_string(),
                requests: vec![row(&app, "eve@example.com")],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Code::PermissionDenied,
        "a member who is no administrator"
    );
    assert_eq!(app.count_users().await, 1 + 101);
}

#[tokio::test]
async fn a_row_over_the_quota_fails_alone() {
    let app = spawn_app_configured(false, |settings| {
        settings.invitations.quota = QuotaSetting(Some(InviteQuota {
            limit: 2,
            window: TimeDelta::hours(1),
        }))
    })
    .await;
    let results = app
        .batch(vec![
            row(&app, "a@example.com"),
            row(&app, "b@example.com"),
            row(&app, "c@example.com"),
        ])
        .await
        .unwrap();
    let outcomes: Vec<Code> = results
        .iter()
        .map(|result| match &result.result {
            Some(Row::User(_)) => Code::Ok,
            _ => error(result).code(),
        })
        .collect();
    let mut sorted = outcomes.clone();
    sorted.sort_by_key(|code| *code as i32);
    assert_eq!(
        sorted,
        [Code::Ok, Code::Ok, Code::ResourceExhausted],
        "{outcomes:?}"
    );
    let refused = results
        .iter()
        .find(|result| matches!(result.result, Some(Row::Error(_))))
        .unwrap();
    let status = error(refused);
    assert_eq!(error_reason(&status), "INVITE_QUOTA_EXHAUSTED");
    assert!(status.get_details_quota_failure().is_some());
    assert!(status.get_details_retry_info().is_some());
}
