use std::collections::HashSet;

use chrono::TimeDelta;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel};
use tonic::Code;
use usermgmt::{grpc::pb, store::entity};

use crate::helpers::{TestApp, bad_fields, spawn_app};

fn emails(response: &pb::ListUsersResponse) -> Vec<&str> {
    response
        .users
        .iter()
        .map(|user| user.email.as_str())
        .collect()
}

/// `count` members invited as `<name> <n>`, `<email><n>@example.com`.
async fn invite_many(app: &TestApp, count: usize, name: &str, email: &str) {
    for n in 0..count {
        app.invite(
            &format!("{name} {n}"),
            &format!("{email}{n}@example.com"),
            pb::Role::Users,
        )
        .await
        .unwrap();
    }
}

/// Every page of the request, in order; each page's `total_size` must be `total`.
async fn all_pages(
    app: &TestApp,
    mut request: pb::ListUsersRequest,
    total: i32,
) -> Vec<pb::ListUsersResponse> {
    let mut pages = Vec::new();
    loop {
        let page = app.list(&app.admin_token, request.clone()).await.unwrap();
        assert_eq!(page.total_size, total);
        request.page_token = page.next_page_token.clone();
        pages.push(page);
        if request.page_token.is_empty() {
            return pages;
        }
    }
}

async fn seed(app: &TestApp) -> (pb::User, pb::User, pb::User) {
    let ada = app
        .invite("Ada Lovelace", "ada@example.com", pb::Role::Engineers)
        .await
        .unwrap();
    let grace = app
        .invite("Grace Hopper", "grace@navy.example", pb::Role::Users)
        .await
        .unwrap();
    let linus = app
        .invite("Linus", "linus@kernel.example", pb::Role::Users)
        .await
        .unwrap();
    (ada, grace, linus)
}

#[tokio::test]
async fn members_are_filtered_by_status_with_expiry_computed_against_the_clock() {
    let app = spawn_app().await;
    let ada = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    app.advance(TimeDelta::hours(23));
    app.invite("Grace", "grace@example.com", pb::Role::Users)
        .await
        .unwrap();
    let by_status = |status: pb::UserStatus| {
        let mut request = app.list_request();
        request.status = Some(status as i32);
        app.list(&app.admin_token, request)
    };

    assert_eq!(
        emails(&by_status(pb::UserStatus::Active).await.unwrap()),
        ["admin@acme.example"]
    );
    assert_eq!(
        emails(&by_status(pb::UserStatus::Invited).await.unwrap()),
        ["ada@example.com", "grace@example.com"]
    );
    assert!(
        by_status(pb::UserStatus::Expired)
            .await
            .unwrap()
            .users
            .is_empty()
    );

    app.advance(TimeDelta::hours(1));
    let expired = by_status(pb::UserStatus::Expired).await.unwrap();
    assert_eq!(emails(&expired), ["ada@example.com"]);
    assert_eq!(expired.users[0].status(), pb::UserStatus::Expired);
    assert_eq!(expired.total_size, 1);
    assert_eq!(
        emails(&by_status(pb::UserStatus::Invited).await.unwrap()),
        ["grace@example.com"]
    );
    let all = app
        .list(&app.admin_token, app.list_request())
        .await
        .unwrap();
    let ada_now = all.users.iter().find(|user| user.id == ada.id).unwrap();
    assert_eq!(ada_now.status(), pb::UserStatus::Expired);
}

#[tokio::test]
async fn members_are_filtered_by_two_factor_and_by_role() {
    let app = spawn_app().await;
    let (ada, _, _) = seed(&app).await;
    // Two-factor is the user's own once they accepted; until then it reads off (R17).
    let mails = app.mail.wait_for(3).await;
    let to_ada = mails.iter().find(|mail| mail.to == "ada@example.com");
    app.accept(&to_ada.unwrap().token(), Some("a long password"))
        .await
        .unwrap();
    let stored = entity::user::Entity::find_by_id(ada.id.parse::<uuid::Uuid>().unwrap())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let mut stored = stored.into_active_model();
    stored.two_factor_enabled = Set(true);
    stored.update(&app.db).await.unwrap();

    let mut request = app.list_request();
    request.two_factor_enabled = Some(true);
    let with_2fa = app.list(&app.admin_token, request.clone()).await.unwrap();
    assert_eq!(emails(&with_2fa), ["ada@example.com"]);
    assert!(with_2fa.users[0].two_factor_enabled);
    request.two_factor_enabled = Some(false);
    assert_eq!(
        app.list(&app.admin_token, request)
            .await
            .unwrap()
            .total_size,
        3
    );

    let mut request = app.list_request();
    request.role = Some(pb::Role::Users as i32);
    let users = app.list(&app.admin_token, request).await.unwrap();
    assert_eq!(
        emails(&users),
        ["grace@navy.example", "linus@kernel.example"]
    );
    assert_eq!(users.total_size, 2);
}

#[tokio::test]
async fn search_matches_an_id_exactly_or_part_of_an_email_or_name_in_any_case() {
    let app = spawn_app().await;
    let (ada, grace, _) = seed(&app).await;
    let search = |text: &str| {
        let mut request = app.list_request();
        request.search = text.into();
        app.list(&app.admin_token, request)
    };
    assert_eq!(emails(&search(&ada.id).await.unwrap()), ["ada@example.com"]);
    assert_eq!(emails(&search("LOVE").await.unwrap()), ["ada@example.com"]);
    assert_eq!(
        emails(&search("navy.EX").await.unwrap()),
        ["grace@navy.example"]
    );
    assert_eq!(
        emails(&search(" hopper ").await.unwrap()),
        [grace.email.as_str()]
    );
    assert!(
        search("%").await.unwrap().users.is_empty(),
        "wildcards are literal"
    );
    assert!(
        search("_").await.unwrap().users.is_empty(),
        "wildcards are literal"
    );
    assert_eq!(search("example").await.unwrap().total_size, 4);
}

#[tokio::test]
async fn a_search_looked_up_by_its_rarest_part_still_matches_the_whole_text() {
    let app = spawn_app().await;
    for (name, email) in [
        ("Quinn Xylo", "quinn.xylo@example.com"),
        ("Xylo Quinn", "xylo.quinn@example.com"),
        ("Quinn", "quinn@xylo.example"),
    ] {
        app.invite(name, email, pb::Role::Users).await.unwrap();
    }
    let mut request = app.list_request();
    // On PostgreSQL the indexes are asked for "quinn" (the longest run of rare letters);
    // only the whole text decides.
    request.search = "quinn.xylo".into();
    let found = app.list(&app.admin_token, request.clone()).await.unwrap();
    assert_eq!(emails(&found), ["quinn.xylo@example.com"]);
    assert_eq!(found.total_size, 1);
    request.search = "xylo".into();
    let found = app.list(&app.admin_token, request.clone()).await.unwrap();
    assert_eq!(found.total_size, 3);
    // No letter-and-digit part: the account's members are walked.
    request.search = "o q".into();
    let found = app.list(&app.admin_token, request).await.unwrap();
    assert_eq!(emails(&found), ["xylo.quinn@example.com"]);
}

#[tokio::test]
async fn a_search_whose_parts_most_users_share_finds_every_match() {
    let app = spawn_app().await;
    // More users hold "alp", "lph" and "pha" than a part may to count as rare: the search
    // walks the account's members instead of asking the indexes for a part.
    invite_many(&app, 14, "Team Alpha", "alpha").await;
    let mut request = app.list_request();
    request.search = "ALPHA".into();
    request.page_size = 5;
    let seen: HashSet<String> = all_pages(&app, request, 14)
        .await
        .iter()
        .flat_map(|page| page.users.iter().map(|user| user.email.clone()))
        .collect();
    assert_eq!(seen.len(), 14);
    let mut request = app.list_request();
    request.search = "alpha1".into();
    let found = app.list(&app.admin_token, request).await.unwrap();
    assert_eq!(found.total_size, 5, "alpha1 and alpha10 to alpha13");
}

#[tokio::test]
async fn pages_chain_through_every_member_exactly_once() {
    let app = spawn_app().await;
    invite_many(&app, 5, "User", "user").await;
    let mut request = app.list_request();
    request.page_size = 2;
    let pages = all_pages(&app, request, 6).await;
    assert!(pages.iter().all(|page| page.users.len() <= 2));
    let seen: Vec<String> = pages
        .iter()
        .flat_map(|page| page.users.iter().map(|user| user.email.clone()))
        .collect();
    assert_eq!(seen.len(), 6);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 6);
}

#[tokio::test]
async fn paging_while_members_are_added_never_repeats_or_skips_one() {
    let app = spawn_app().await;
    for n in 0..6 {
        app.invite(
            &format!("User {n}"),
            &format!("user{n}@example.com"),
            pb::Role::Users,
        )
        .await
        .unwrap();
    }
    let before: Vec<String> = app
        .list(&app.admin_token, app.list_request())
        .await
        .unwrap()
        .users
        .into_iter()
        .map(|user| user.email)
        .collect();

    let mut request = app.list_request();
    request.page_size = 3;
    let mut seen = Vec::new();
    let mut added = 0;
    loop {
        let page = app.list(&app.admin_token, request.clone()).await.unwrap();
        seen.extend(page.users.iter().map(|user| user.email.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        app.invite("Late", &format!("late{added}@example.com"), pb::Role::Users)
            .await
            .unwrap();
        added += 1;
        request.page_token = page.next_page_token;
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no member repeats: {seen:?}");
    for email in &before {
        assert!(seen.contains(email), "{email} was skipped");
    }
}

#[tokio::test]
async fn bad_paging_input_is_refused() {
    let app = spawn_app().await;
    seed(&app).await;
    let mut request = app.list_request();
    request.page_size = 1;
    let first = app.list(&app.admin_token, request.clone()).await.unwrap();
    assert!(!first.next_page_token.is_empty());

    let mut other_query = request.clone();
    other_query.search = "example".into();
    other_query.page_token = first.next_page_token.clone();
    let status = app.list(&app.admin_token, other_query).await.unwrap_err();
    assert_eq!(bad_fields(&status), ["page_token"]);

    let mut garbage = request.clone();
    garbage.page_token = "definitely-not-a-token".into();
    assert_eq!(
        bad_fields(&app.list(&app.admin_token, garbage).await.unwrap_err()),
        ["page_token"]
    );

    let mut negative = request.clone();
    negative.page_size = -5;
    assert_eq!(
        bad_fields(&app.list(&app.admin_token, negative).await.unwrap_err()),
        ["page_size"]
    );

    let mut bad_enum = request;
    bad_enum.status = Some(42);
    bad_enum.role = Some(7);
    let status = app.list(&app.admin_token, bad_enum).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["status", "role"]);
}

#[tokio::test]
async fn every_member_of_the_account_may_list_it() {
    let app = spawn_app().await;
    seed(&app).await;
    let plain = app
        .add_member(
            app.account_id,
            "plain@acme.example",
            usermgmt::domain::Role::Users,
            usermgmt::domain::Role::Users,
        )
        .await;
    let listed = app.list(&plain.token, app.list_request()).await.unwrap();
    assert_eq!(listed.total_size, 5);
}
