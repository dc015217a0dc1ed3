//! WatchChanges: an account's changes as they commit, resumable with a cursor.

use std::time::Duration;

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use tonic::{Code, Status, Streaming};
use uuid::Uuid;

use usermgmt::{
    domain::Role,
    grpc::pb,
    store::entity::{account_change_sequence as sequence, audit_event},
};

use crate::helpers::{
    TestApp, bad_fields, spawn_app_configured, spawn_app_with, with_bearer, with_token,
};

/// Longest wait for a message the test is sure will come: a failing test ends, a passing one
/// never waits this long.
const PATIENCE: Duration = Duration::from_secs(20);

fn request(app: &TestApp, start_after: &str) -> pb::WatchChangesRequest {
    pb::WatchChangesRequest {
        account_id: app.account_id.to_string(),
        start_after: start_after.into(),
    }
}

async fn watch(
    app: &TestApp,
    token: &str,
    start_after: &str,
) -> Result<Streaming<pb::ChangeEvent>, Status> {
    app.users
        .clone()
        .watch_changes(with_token(token, request(app, start_after)))
        .await
        .map(tonic::Response::into_inner)
}

/// The stream's next message, or how it ended.
async fn next(stream: &mut Streaming<pb::ChangeEvent>) -> Result<pb::ChangeEvent, Status> {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the stream sends in time")
        .and_then(|message| message.ok_or_else(|| Status::unknown("the stream ended")))
}

/// The next change, past heartbeats.
async fn next_change(stream: &mut Streaming<pb::ChangeEvent>) -> (String, pb::AuditEvent) {
    loop {
        let message = next(stream).await.expect("a change");
        if let Some(event) = message.event {
            return (message.cursor, event);
        }
    }
}

/// Invites `count` people on `app`, one after the other.
async fn invite_many(app: &TestApp, prefix: &str, count: usize) -> Vec<String> {
    let mut invited = Vec::new();
    for n in 0..count {
        let user = app
            .invite(
                &format!("{prefix} {n}"),
                &format!("{prefix}-{n}@example.com"),
                pb::Role::Users,
            )
            .await
            .expect("the invitation");
        invited.push(user.id);
    }
    invited
}

#[tokio::test]
async fn a_watcher_that_reconnects_with_its_cursor_gets_exactly_what_it_missed_then_live_changes() {
    let app = spawn_app_with(false).await;
    let other = app.sibling(false).await;
    let mut stream = watch(&app, &app.admin_token, "").await.unwrap();

    // Writers on both instances, while the watcher reads five changes and goes away.
    let (here, there, (mut seen, cursor)) = tokio::join!(
        invite_many(&app, "here", 10),
        invite_many(&other, "there", 10),
        async move {
            let mut seen = Vec::new();
            let mut cursor = String::new();
            for _ in 0..5 {
                let (at, event) = next_change(&mut stream).await;
                cursor = at;
                seen.push(event);
            }
            (seen, cursor)
        }
    );

    // Back, on the other instance: the rest, nothing twice.
    let mut stream = watch(&other, &app.admin_token, &cursor).await.unwrap();
    while seen.len() < 20 {
        seen.push(next_change(&mut stream).await.1);
    }
    assert!(
        seen.iter()
            .all(|e| e.action() == pb::AuditAction::UserInvited)
    );
    let targets: Vec<&str> = seen.iter().map(|e| e.target_user_id.as_str()).collect();
    let mut every = targets.clone();
    every.sort_unstable();
    every.dedup();
    assert_eq!(every.len(), 20, "every invitation once: {targets:?}");
    // Each writer's invitations commit one after the other, and arrive in that order.
    for invited in [&here, &there] {
        let arrived: Vec<&str> = targets
            .iter()
            .copied()
            .filter(|id| invited.iter().any(|i| i == id))
            .collect();
        assert_eq!(arrived, *invited);
    }

    // Then live ones, from either instance.
    let live = app
        .invite("Live", "live@example.com", pb::Role::Users)
        .await
        .unwrap();
    let (_, event) = next_change(&mut stream).await;
    assert_eq!(event.target_user_id, live.id);
    // Exactly as ListAuditEvents shows it.
    let listed = app
        .audit(pb::ListAuditEventsRequest {
            account_id: app.account_id.to_string(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.events, [event]);
}

/// What a replica whose clock runs an hour ahead records: an event numbered as every write
/// numbers it, whose id sorts after the ones recorded later elsewhere.
async fn record_from_the_future(app: &TestApp) -> Uuid {
    let ahead = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let id = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ahead.timestamp().try_into().unwrap(),
        0,
    ));
    let tx = app.db.begin().await.unwrap();
    sequence::Entity::update_many()
        .col_expr(
            sequence::Column::LastSeq,
            Expr::col(sequence::Column::LastSeq).add(1),
        )
        .filter(sequence::Column::AccountId.eq(app.account_id))
        .exec(&tx)
        .await
        .unwrap();
    let seq = sequence::Entity::find_by_id(app.account_id)
        .one(&tx)
        .await
        .unwrap()
        .expect("the account's counter")
        .last_seq;
    audit_event::ActiveModel {
        id: Set(id),
        account_id: Set(app.account_id),
        actor_id: Set(Some(app.admin_id)),
        actor_credential: Set("operator".into()),
        action: Set("api_token.deleted".into()),
        target_user_id: Set(None),
        target_token_id: Set(Some(Uuid::now_v7())),
        request_id: Set("skewed".into()),
        changes: Set("[]".into()),
        created_at: Set(app.clock_now()),
        seq: Set(seq),
        link_delivery: Set(None),
    }
    .insert(&tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn changes_arrive_in_commit_order_even_when_their_ids_do_not_sort_so() {
    let app = spawn_app_with(false).await;
    app.invite("First", "first@example.com", pb::Role::Users)
        .await
        .unwrap();
    let mut stream = watch(&app, &app.admin_token, "").await.unwrap();
    let skewed = record_from_the_future(&app).await;
    let later = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();

    let (after_skewed, first) = next_change(&mut stream).await;
    let (_, second) = next_change(&mut stream).await;
    assert_eq!(first.id, skewed.to_string());
    assert_eq!(second.target_user_id, later.id);
    assert!(second.id < first.id, "the later commit has the smaller id");

    // Resuming after the skewed event still finds the later one.
    drop(stream);
    let mut stream = watch(&app, &app.admin_token, &after_skewed).await.unwrap();
    assert_eq!(next_change(&mut stream).await.1.id, second.id);
}

#[tokio::test]
async fn an_administrator_demoted_while_watching_is_cut_off_before_the_next_change() {
    let app = spawn_app_with(false).await;
    let watcher = app
        .add_member_without_token(app.account_id, "watcher@example.com", Role::Administrators)
        .await;
    let mut stream = app
        .users
        .clone()
        .watch_changes(with_bearer(&app.signed_in(watcher), request(&app, "")))
        .await
        .unwrap()
        .into_inner();
    let mut demote = app.update_request(watcher);
    demote.role = Some(pb::Role::Users as i32);
    app.update(&app.admin_token, demote).await.unwrap();

    let ended = next(&mut stream).await.expect_err("the stream ends");
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
}

#[tokio::test]
async fn a_removed_administrator_s_stream_ends_as_for_a_stranger() {
    let app = spawn_app_with(false).await;
    let watcher = app
        .add_member_without_token(app.account_id, "watcher@example.com", Role::Administrators)
        .await;
    let jwt = app.signed_in(watcher);
    let mut stream = app
        .users
        .clone()
        .watch_changes(with_bearer(&jwt, request(&app, "")))
        .await
        .unwrap()
        .into_inner();
    app.delete(&app.admin_token, watcher).await.unwrap();

    let ended = next(&mut stream).await.expect_err("the stream ends");
    assert_eq!(ended.code(), Code::NotFound, "{ended:?}");
    // The code a new call of theirs gets.
    let refused = app
        .users
        .clone()
        .watch_changes(with_bearer(&jwt, request(&app, "")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
}

#[tokio::test]
async fn only_administrators_of_the_account_may_watch() {
    let app = spawn_app_with(false).await;
    let member = app
        .add_member(
            app.account_id,
            "eng@example.com",
            Role::Engineers,
            Role::Engineers,
        )
        .await;
    let refused = watch(&app, &member.token, "").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let (_, _, stranger) = app.other_account("boss@globex.example").await;
    let refused = watch(&app, &stranger, "").await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);

    let refused = watch(&app, "not-a-token", "").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_cursor_that_is_not_of_this_account_s_stream_is_refused_naming_it() {
    let app = spawn_app_with(false).await;
    for bad in ["garbage", "MTI", "%%%"] {
        let refused = watch(&app, &app.admin_token, bad).await.unwrap_err();
        assert_eq!(bad_fields(&refused), ["start_after"], "{bad:?}");
    }

    // A real cursor, of another account.
    let (other_account, _, other_admin) = app.other_account("boss@globex.example").await;
    let mut stream = app
        .users
        .clone()
        .watch_changes(with_token(
            &other_admin,
            pb::WatchChangesRequest {
                account_id: other_account.to_string(),
                start_after: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    app.tokens
        .clone()
        .create_api_token(with_token(
            &other_admin,
            pb::CreateApiTokenRequest {
                account_id: other_account.to_string(),
                name: "theirs".into(),
                role: pb::Role::Users as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let (foreign, _) = next_change(&mut stream).await;
    let refused = watch(&app, &app.admin_token, &foreign).await.unwrap_err();
    assert_eq!(bad_fields(&refused), ["start_after"]);

    let refused = app
        .users
        .clone()
        .watch_changes(with_token(
            &app.admin_token,
            pb::WatchChangesRequest {
                account_id: "nope".into(),
                start_after: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&refused), ["account_id"]);
}

#[tokio::test]
async fn streams_end_unavailable_at_shutdown_so_clients_reconnect() {
    let app = spawn_app_with(false).await;
    let mut stream = watch(&app, &app.admin_token, "").await.unwrap();
    let admin_token = app.admin_token.clone();
    let (users, account_id) = (app.users.clone(), app.account_id);
    let stopping = tokio::spawn(app.stop());

    let ended = next(&mut stream).await.expect_err("the stream ends");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert_eq!(crate::helpers::reason(&ended), "SHUTTING_DOWN");
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("the server stops without waiting for its grace")
        .unwrap();
    // No new stream opens on the stopped server.
    let refused = users
        .clone()
        .watch_changes(with_token(
            &admin_token,
            pb::WatchChangesRequest {
                account_id: account_id.to_string(),
                start_after: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
}

#[tokio::test]
async fn a_quiet_stream_beats_with_its_cursor_and_checks_the_watcher_each_time() {
    let app = spawn_app_configured(false, |settings| {
        settings.watch.heartbeat_interval = Duration::from_millis(20);
    })
    .await;
    let mut stream = watch(&app, &app.admin_token, "").await.unwrap();
    let beat = next(&mut stream).await.unwrap();
    assert!(beat.event.is_none(), "a heartbeat carries no event");
    assert!(!beat.cursor.is_empty());

    let invited = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let (cursor, event) = next_change(&mut stream).await;
    assert_eq!(event.target_user_id, invited.id);
    let beat = next(&mut stream).await.unwrap();
    assert_eq!((beat.cursor.as_str(), beat.event), (cursor.as_str(), None));

    // A change no event announces (an operator's edit of the database) is seen at the next
    // heartbeat: the stream of a watcher who is no longer an administrator ends.
    usermgmt::store::entity::membership::Entity::update_many()
        .col_expr(
            usermgmt::store::entity::membership::Column::Role,
            Expr::value(Role::Users.id()),
        )
        .filter(usermgmt::store::entity::membership::Column::UserId.eq(app.admin_id))
        .exec(&app.db)
        .await
        .unwrap();
    let ended = loop {
        match next(&mut stream).await {
            Ok(message) => assert!(message.event.is_none(), "{message:?}"),
            Err(ended) => break ended,
        }
    };
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
}
