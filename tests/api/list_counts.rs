//! ListUsers' `total_size` at scale: exact from counters the database keeps for the
//! unfiltered list and the status, role and two-factor filters; counted up to a bound and
//! flagged elsewhere. Search through the indexes finds what a walk of the members finds.

use chrono::{DateTime, TimeDelta, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter,
};
use usermgmt::{
    domain::{CloudAccess, MemberStatus, Role},
    grpc::pb,
    store::{self, MemberCount, MemberFilter, Store, entity},
};
use uuid::Uuid;

use crate::helpers::{TestApp, create_account, fresh_database, spawn_app};

const STATUSES: [Option<pb::UserStatus>; 4] = [
    None,
    Some(pb::UserStatus::Active),
    Some(pb::UserStatus::Invited),
    Some(pb::UserStatus::Expired),
];
const ROLES: [Option<pb::Role>; 4] = [
    None,
    Some(pb::Role::Administrators),
    Some(pb::Role::Engineers),
    Some(pb::Role::Users),
];
const TWO_FACTOR: [Option<bool>; 3] = [None, Some(true), Some(false)];

/// For every combination of the counted filters, `total_size` is the number of members
/// the list returns, and exact.
async fn assert_counts_match_the_list(app: &TestApp, step: &str) {
    for status in STATUSES {
        for role in ROLES {
            for two_factor_enabled in TWO_FACTOR {
                let request = pb::ListUsersRequest {
                    page_size: 1000,
                    status: status.map(|status| status as i32),
                    role: role.map(|role| role as i32),
                    two_factor_enabled,
                    ..app.list_request()
                };
                let listed = app.list(&app.admin_token, request).await.unwrap();
                assert_eq!(
                    (listed.total_size as usize, listed.total_size_is_lower_bound),
                    (listed.users.len(), false),
                    "{step}: status {status:?}, role {role:?}, two-factor {two_factor_enabled:?}"
                );
            }
        }
    }
}

async fn set_two_factor(app: &TestApp, user_id: &str, enabled: bool) {
    let mut user = entity::user::Entity::find_by_id(user_id.parse::<Uuid>().unwrap())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    user.two_factor_enabled = Set(enabled);
    user.update(&app.db).await.unwrap();
}

#[tokio::test]
async fn counts_stay_exact_through_invite_accept_role_change_two_factor_expiry_and_delete() {
    let app = spawn_app().await;
    assert_counts_match_the_list(&app, "bootstrapped").await;
    let ada = app
        .invite("Ada", "ada@example.com", pb::Role::Engineers)
        .await
        .unwrap();
    let grace = app
        .invite("Grace", "grace@example.com", pb::Role::Users)
        .await
        .unwrap();
    app.advance(TimeDelta::hours(12));
    let linus = app
        .invite("Linus", "linus@example.com", pb::Role::Users)
        .await
        .unwrap();
    assert_counts_match_the_list(&app, "invited").await;

    let mails = app.mail.wait_for(3).await;
    let to_ada = mails.iter().find(|mail| mail.to == "ada@example.com");
    app.accept(&to_ada.unwrap().token(), Some("a long password"))
        .await
        .unwrap();
    assert_counts_match_the_list(&app, "accepted").await;

    set_two_factor(&app, &ada.id, true).await;
    // A pending member reads two-factor off whatever their user has (R17).
    set_two_factor(&app, &grace.id, true).await;
    assert_counts_match_the_list(&app, "two-factor on").await;

    let mut request = app.update_request(&ada.id);
    request.role = Some(pb::Role::Administrators as i32);
    app.update(&app.admin_token, request).await.unwrap();
    assert_counts_match_the_list(&app, "role changed").await;

    app.advance(TimeDelta::hours(13));
    assert_counts_match_the_list(&app, "one invitation expired").await;
    app.resend(&grace.id).await.unwrap();
    assert_counts_match_the_list(&app, "resent").await;

    app.delete(&app.admin_token, &linus.id).await.unwrap();
    app.delete(&app.admin_token, &ada.id).await.unwrap();
    set_two_factor(&app, &ada.id, false).await;
    assert_counts_match_the_list(&app, "deleted").await;
}

/// `members` members of the account, written straight to the tables as the benchmark
/// seeds them: the first `expired` pending with an expired link, the next `invited`
/// pending, the rest active, every third of those with two-factor on.
async fn seed(app: &TestApp, members: usize, expired: usize, invited: usize) {
    let account = (app.account_id, app.admin_id);
    seed_members(&app.db, account, app.clock_now(), members, expired, invited).await;
}

async fn seed_members(
    db: &DatabaseConnection,
    (account_id, admin_id): (Uuid, Uuid),
    now: DateTime<Utc>,
    members: usize,
    expired: usize,
    invited: usize,
) {
    let mut users = Vec::new();
    let mut memberships = Vec::new();
    for i in 0..members {
        let pending = i < expired + invited;
        let user_id = Uuid::now_v7();
        let name = format!("Member {i:05}");
        users.push(entity::user::ActiveModel {
            id: Set(user_id),
            email: Set(format!("member{i:05}@many.example")),
            name_lower: Set(name.to_lowercase()),
            name: Set(name.clone()),
            language: Set("en".into()),
            password_hash: Set(None),
            activated: Set(!pending),
            two_factor_enabled: Set(i % 3 == 0),
            created_at: Set(now),
        });
        let expires_at = if i < expired {
            now - TimeDelta::days(1)
        } else {
            now + TimeDelta::days(1)
        };
        memberships.push(entity::membership::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(account_id),
            user_id: Set(user_id),
            role: Set(Role::Users.id()),
            cloud_access: Set(CloudAccess::default_for(Role::Users).to_text()),
            status: Set(if pending { "invited" } else { "active" }.into()),
            invited_by: Set(Some(admin_id)),
            invited_at: Set(now),
            invitation_expires_at: Set(pending.then_some(expires_at)),
            accepted_at: Set((!pending).then_some(now)),
            invited_name_lower: Set(format!("invitee {i:05}")),
            invited_name: Set(format!("Invitee {i:05}")),
            invited_language: Set("en".into()),
            created_at: Set(now),
        });
    }
    for chunk in users.chunks(500) {
        entity::user::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await
            .unwrap();
    }
    for chunk in memberships.chunks(500) {
        entity::membership::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await
            .unwrap();
    }
}

fn counted(response: &pb::ListUsersResponse) -> (i32, bool) {
    (response.total_size, response.total_size_is_lower_bound)
}

#[tokio::test]
async fn rows_written_by_sql_are_counted_and_counts_past_the_bound_are_flagged() {
    let app = spawn_app().await;
    seed(&app, 2100, 1100, 100).await;
    let list = |request: pb::ListUsersRequest| app.list(&app.admin_token, request);
    let by_status = |status: pb::UserStatus| pb::ListUsersRequest {
        status: Some(status as i32),
        ..app.list_request()
    };

    assert_eq!(
        counted(&list(app.list_request()).await.unwrap()),
        (2101, false)
    );
    let active = list(by_status(pb::UserStatus::Active)).await.unwrap();
    assert_eq!(counted(&active), (901, false));
    let two_factor = pb::ListUsersRequest {
        two_factor_enabled: Some(true),
        ..app.list_request()
    };
    // Members 1200 to 2099 are active; every third of them has two-factor on.
    assert_eq!(counted(&list(two_factor).await.unwrap()), (300, false));
    assert_eq!(
        counted(&list(by_status(pb::UserStatus::Expired)).await.unwrap()),
        (1000, true)
    );
    assert_eq!(
        counted(&list(by_status(pb::UserStatus::Invited)).await.unwrap()),
        (100, false)
    );
    let search = |text: &str| pb::ListUsersRequest {
        search: text.into(),
        page_size: 1000,
        ..app.list_request()
    };
    let common = list(search("many.example")).await.unwrap();
    assert_eq!(counted(&common), (1000, true));
    assert_eq!(common.users.len(), 1000);
    let short = list(search("me")).await.unwrap();
    assert_eq!(counted(&short), (1000, true));

    // A user deleted by hand takes their memberships, and their two-factor, with them.
    entity::user::Entity::delete_many()
        .filter(entity::user::Column::Email.eq("member02097@many.example"))
        .exec(&app.db)
        .await
        .unwrap();
    let two_factor = pb::ListUsersRequest {
        two_factor_enabled: Some(true),
        ..app.list_request()
    };
    assert_eq!(counted(&list(two_factor).await.unwrap()), (299, false));
    assert_eq!(
        counted(&list(app.list_request()).await.unwrap()),
        (2100, false)
    );
}

#[tokio::test]
async fn search_finds_rare_members_through_the_indexes_as_a_walk_would() {
    let app = spawn_app().await;
    seed(&app, 2100, 0, 100).await;
    app.invite("Zelda Zed", "zelda@zz.example", pb::Role::Users)
        .await
        .unwrap();
    let search = |text: &str, page_size: i32| {
        let request = pb::ListUsersRequest {
            search: text.into(),
            page_size,
            ..app.list_request()
        };
        app.list(&app.admin_token, request)
    };
    let emails = |response: &pb::ListUsersResponse| -> Vec<String> {
        response
            .users
            .iter()
            .map(|user| user.email.clone())
            .collect()
    };

    // Past the first members, which a search walks before it asks its indexes.
    let rare = search("member0209", 50).await.unwrap();
    let expected: Vec<String> = (2090..2100)
        .map(|i| format!("member{i:05}@many.example"))
        .collect();
    assert_eq!(emails(&rare), expected);
    assert_eq!(counted(&rare), (10, false));
    // Pending members are found by their invited name, accepted ones by their own.
    let pending = search("invitee 0004", 50).await.unwrap();
    assert_eq!(counted(&pending), (10, false));
    assert_eq!(
        counted(&search("member 0004", 50).await.unwrap()),
        (0, false)
    );
    assert_eq!(
        counted(&search("member 0209", 50).await.unwrap()),
        (10, false)
    );
    assert_eq!(
        counted(&search("invitee 0209", 50).await.unwrap()),
        (0, false)
    );
    // Two characters: the start of the email or of the name.
    let zed = search("zE", 50).await.unwrap();
    assert_eq!(emails(&zed), ["zelda@zz.example"]);
    assert_eq!(counted(&zed), (1, false));
    assert!(search("zz", 50).await.unwrap().users.is_empty());
    assert!(search("*", 50).await.unwrap().users.is_empty());
    assert_eq!(
        counted(&search("nobody-has-this", 50).await.unwrap()),
        (0, false)
    );

    // Pages of a search chain through every match once, walked or looked up.
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let request = pb::ListUsersRequest {
            search: "member020".into(),
            page_size: 30,
            page_token: token,
            ..app.list_request()
        };
        let page = app.list(&app.admin_token, request).await.unwrap();
        seen.extend(emails(&page));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let expected: Vec<String> = (2000..2100)
        .map(|i| format!("member{i:05}@many.example"))
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn the_migration_counts_and_indexes_the_members_already_there() {
    let database = fresh_database().await;
    let db = store::connect(database.url()).await.unwrap();
    // The migrations before the counters and the search table.
    Migrator::up(&db, Some(11)).await.unwrap();
    let now: DateTime<Utc> = "2026-11-29T09:00:00Z".parse().unwrap();
    let account = create_account(&db, "Acme", "admin@acme.example", "Alice Admin", now).await;
    seed_members(&db, (account.id, account.admin_id), now, 30, 5, 5).await;

    Migrator::up(&db, None).await.unwrap();

    let store = Store::new(db.clone());
    let count = |filter: MemberFilter| {
        let store = store.clone();
        async move { store.count_members(account.id, &filter, now).await.unwrap() }
    };
    let exact = |members| MemberCount {
        members,
        is_lower_bound: false,
    };
    assert_eq!(count(MemberFilter::default()).await, exact(31));
    let active = MemberFilter {
        status: Some(MemberStatus::Active),
        ..MemberFilter::default()
    };
    assert_eq!(count(active).await, exact(21));
    let two_factor = MemberFilter {
        two_factor_enabled: Some(true),
        ..MemberFilter::default()
    };
    // Members 10 to 29 are active; 12, 15, 18, 21, 24 and 27 have two-factor on.
    assert_eq!(count(two_factor).await, exact(6));
    let search = MemberFilter {
        search: Some(("invitee 0000".into(), None)),
        ..MemberFilter::default()
    };
    let found = store
        .list_members(account.id, &search, None, 51, now)
        .await
        .unwrap();
    assert_eq!(found.len(), 10);
}
