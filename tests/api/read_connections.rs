//! PostgreSQL's reads outside transactions run on connections that go back to their pool
//! without a round trip. A read given up half-way (its call's deadline passed while the
//! database held its statement) must not leave a connection that answers a later call
//! with the abandoned statement's row.

use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait};
use usermgmt::grpc::pb;

use crate::health::{expect_given_up, wait_for_blocked_calls};
use crate::helpers::{TestApp, spawn_app, with_token};

fn get(app: &TestApp, user_id: &str) -> tonic::Request<pb::GetUserRequest> {
    with_token(
        &app.admin_token,
        pb::GetUserRequest {
            account_id: app.account_id.to_string(),
            user_id: user_id.into(),
        },
    )
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn reads_cut_short_by_their_deadline_leave_no_connection_that_answers_wrongly() {
    let app = spawn_app().await;
    let ada = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let bob = app
        .invite("Bob", "bob@example.com", pb::Role::Users)
        .await
        .unwrap();

    // The test's transaction holds the members' table: GetUser's statement waits for it.
    let lock = app.db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE memberships IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Several reads of Ada, each on a connection of its own, given up at their deadline
    // while their statements wait.
    const ABANDONED: usize = 4;
    let mut abandoned = Vec::new();
    for _ in 0..ABANDONED {
        let mut users = app.users.clone();
        let mut request = get(&app, &ada.id);
        request.set_timeout(Duration::from_secs(2));
        abandoned.push(tokio::spawn(async move { users.get_user(request).await }));
    }
    wait_for_blocked_calls(&app, ABANDONED as i64).await;
    expect_given_up(abandoned).await;
    // The database now answers the abandoned statements, to connections nobody reads.
    lock.rollback().await.unwrap();

    // Every later read gets its own member, whichever connection it is given.
    for _ in 0..3 * ABANDONED {
        for member in [&bob, &ada] {
            let got = app
                .users
                .clone()
                .get_user(get(&app, &member.id))
                .await
                .expect("GetUser after the abandoned reads")
                .into_inner()
                .user
                .unwrap();
            assert_eq!(got.id, member.id);
            assert_eq!(got.email, member.email);
        }
    }
    app.stop().await;
}
