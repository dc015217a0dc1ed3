//! USERMGMT_INVITE_QUOTA: an account's invitations and resends per sliding window, counted
//! in the database so that every replica shares it.

use std::time::Duration;

use chrono::TimeDelta;
use sea_orm::{EntityTrait, PaginatorTrait};
use tonic::Code;
use tonic_types::StatusExt;

use usermgmt::config::QuotaSetting;
use usermgmt::config::Settings;
use usermgmt::domain::invitation::InviteQuota;
use usermgmt::grpc::pb;
use usermgmt::store::entity;

use crate::helpers::{
    TestApp, create_account, invite_request, reason, spawn_app_configured, with_token,
};

fn quota(limit: u32, window: &str) -> impl Fn(&mut Settings) + Clone {
    let quota = QuotaSetting(Some(InviteQuota {
        limit,
        window: TimeDelta::from_std(humantime::parse_duration(window).unwrap()).unwrap(),
    }));
    move |settings: &mut Settings| settings.invitations.quota = quota
}

async fn invite(
    app: &TestApp,
    account: uuid::Uuid,
    token: &str,
    n: usize,
) -> Result<pb::User, tonic::Status> {
    app.users
        .clone()
        .invite_user(with_token(
            token,
            invite_request(
                account,
                "Someone",
                &format!("someone{n}@example.com"),
                pb::Role::Users,
            ),
        ))
        .await
        .map(|answer| answer.into_inner().user.expect("a user"))
}

async fn memberships(app: &TestApp) -> u64 {
    entity::membership::Entity::find()
        .count(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn past_the_quota_an_invitation_is_refused_with_its_details_until_the_window_slides() {
    let app = spawn_app_configured(false, quota(3, "1h")).await;
    let first = invite(&app, app.account_id, &app.admin_token, 1)
        .await
        .unwrap();
    app.advance(TimeDelta::minutes(10));
    let second = invite(&app, app.account_id, &app.admin_token, 2)
        .await
        .unwrap();
    app.advance(TimeDelta::minutes(10));
    app.resend(&first.id)
        .await
        .expect("a resend counts as the third");
    let before = memberships(&app).await;

    let refused = invite(&app, app.account_id, &app.admin_token, 4)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "INVITE_QUOTA_EXHAUSTED");
    let details = refused.get_error_details();
    let violation = &details.quota_failure().expect("a QuotaFailure").violations[0];
    assert_eq!(violation.subject, "account");
    assert_eq!(violation.description, "3 invitations and resends per 1h");
    assert_eq!(
        details.retry_info().expect("a RetryInfo").retry_delay,
        Some(Duration::from_secs(40 * 60)),
        "the oldest of the three leaves the window in 40 minutes"
    );
    assert_eq!(memberships(&app).await, before, "nothing changed");
    let resend_refused = app.resend(&second.id).await.unwrap_err();
    assert_eq!(reason(&resend_refused), "INVITE_QUOTA_EXHAUSTED");

    // Another account has a quota of its own.
    let other = create_account(
        &app.db,
        "Other",
        "boss@other.example",
        "Boss",
        app.clock_now(),
    )
    .await;
    invite(&app, other.id, &other.admin_token, 5).await.unwrap();

    app.advance(TimeDelta::minutes(40));
    invite(&app, app.account_id, &app.admin_token, 6)
        .await
        .expect("the first invitation left the window");
    assert_eq!(
        reason(
            &invite(&app, app.account_id, &app.admin_token, 7)
                .await
                .unwrap_err()
        ),
        "INVITE_QUOTA_EXHAUSTED"
    );
}

#[tokio::test]
async fn a_refused_invitation_does_not_count_and_zero_turns_the_quota_off() {
    let app = spawn_app_configured(false, quota(1, "1h")).await;
    invite(&app, app.account_id, &app.admin_token, 1)
        .await
        .unwrap();
    for _ in 0..3 {
        invite(&app, app.account_id, &app.admin_token, 2)
            .await
            .unwrap_err();
    }
    app.advance(TimeDelta::hours(1));
    invite(&app, app.account_id, &app.admin_token, 2)
        .await
        .expect("the refusals were not counted");

    let unlimited = app
        .sibling_configured(false, |settings| {
            settings.invitations.quota = QuotaSetting(None)
        })
        .await;
    for n in 3..6 {
        invite(&unlimited, unlimited.account_id, &unlimited.admin_token, n)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn two_instances_share_the_quota_even_when_inviting_at_once() {
    let first = spawn_app_configured(false, quota(5, "24h")).await;
    let second = first.sibling_configured(false, quota(5, "24h")).await;
    let calls = (0..12).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        invite(app, app.account_id, &app.admin_token, n)
    });
    let answers = futures::future::join_all(calls).await;
    let invited = answers.iter().filter(|answer| answer.is_ok()).count();
    let codes: Vec<Code> = answers
        .iter()
        .map(|answer| {
            answer
                .as_ref()
                .map_or_else(tonic::Status::code, |_| Code::Ok)
        })
        .collect();
    assert_eq!(invited, 5, "{codes:?}");
    for refused in answers.iter().filter_map(|answer| answer.as_ref().err()) {
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    }
    assert_eq!(memberships(&first).await, 1 + 5);
}
