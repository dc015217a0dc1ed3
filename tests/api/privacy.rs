//! R17: until a member accepts, their account sees only what it wrote in the invitation —
//! never the profile of a user who exists elsewhere; after acceptance, the user's own.

use chrono::{DateTime, TimeDelta, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, EntityTrait, sea_query::Query};
use usermgmt::{
    domain::{InvitationEmail, InvitationKind, Language, Role},
    grpc::pb,
    store::{self, entity},
};
use uuid::Uuid;

use crate::helpers::{TestApp, fresh_database, invite_request, spawn_app, with_token};

/// Bob: an administrator of Globex who chose German and turned two-factor on there.
struct Bob {
    account_id: Uuid,
    user_id: Uuid,
    token: String,
    created_at: DateTime<Utc>,
}

async fn bob_of_globex(app: &TestApp) -> Bob {
    let created_at = app.clock_now();
    let (account_id, user_id, token) = app.other_account("bob@globex.example").await;
    let own = pb::UpdateUserRequest {
        account_id: account_id.to_string(),
        user_id: user_id.to_string(),
        language: Some(pb::Language::De as i32),
        two_factor_enabled: Some(true),
        ..Default::default()
    };
    app.update(&token, own).await.unwrap();
    // The invitation comes a day later, so its time cannot pass for the user's.
    app.advance(TimeDelta::days(1));
    Bob {
        account_id,
        user_id,
        token,
        created_at,
    }
}

/// Acme invites Bob's email under a name and language of its own choosing.
async fn invite_bob(app: &TestApp) -> pb::User {
    let mut request = invite_request(
        app.account_id,
        "Robert from Sales",
        "bob@globex.example",
        pb::Role::Users,
    );
    request.language = pb::Language::Ru as i32;
    app.users
        .clone()
        .invite_user(with_token(&app.admin_token, request))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

async fn get(app: &TestApp, token: &str, account_id: Uuid, user_id: Uuid) -> pb::User {
    app.users
        .clone()
        .get_user(with_token(
            token,
            pb::GetUserRequest {
                account_id: account_id.to_string(),
                user_id: user_id.to_string(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

/// The ids of Acme's members a search (and optional two-factor filter) finds, and the total.
async fn find(app: &TestApp, search: &str, two_factor: Option<bool>) -> (Vec<String>, i32) {
    let mut request = app.list_request();
    request.search = search.into();
    request.two_factor_enabled = two_factor;
    let found = app.list(&app.admin_token, request).await.unwrap();
    let ids = found.users.into_iter().map(|user| user.id).collect();
    (ids, found.total_size)
}

fn timestamp(at: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    })
}

fn assert_shows_the_invitation(user: &pb::User, invited_at: DateTime<Utc>) {
    assert_eq!(user.name, "Robert from Sales");
    assert_eq!(user.language(), pb::Language::Ru);
    assert!(
        !user.two_factor_enabled,
        "two-factor reads off until accepted"
    );
    assert_eq!(
        user.created_at,
        timestamp(invited_at),
        "the invitation's time"
    );
    assert_eq!(user.status(), pb::UserStatus::Invited);
}

fn assert_shows_bob_himself(user: &pb::User, bob: &Bob) {
    assert_eq!(user.name, "Bob Boss");
    assert_eq!(user.language(), pb::Language::De);
    assert!(user.two_factor_enabled);
    assert_eq!(user.created_at, timestamp(bob.created_at));
}

#[tokio::test]
async fn inviting_a_user_of_another_account_shows_only_what_the_invitation_wrote() {
    let app = spawn_app().await;
    let bob = bob_of_globex(&app).await;
    let invited_at = app.clock_now();

    let invited = invite_bob(&app).await;

    assert_eq!(invited.id, bob.user_id.to_string());
    assert_shows_the_invitation(&invited, invited_at);
    // The email's delivery moves on as the notifier works; the rest reads as invited.
    let without_delivery = |user: &pb::User| pb::User {
        invitation_delivery: None,
        ..user.clone()
    };
    let got = get(&app, &app.admin_token, app.account_id, bob.user_id).await;
    assert_eq!(without_delivery(&got), without_delivery(&invited));
    let listed = app
        .list(&app.admin_token, app.list_request())
        .await
        .unwrap();
    let in_list = listed.users.iter().find(|user| user.id == invited.id);
    assert_eq!(
        in_list.map(without_delivery),
        Some(without_delivery(&invited))
    );
}

#[tokio::test]
async fn a_resent_or_updated_pending_member_still_shows_the_invitation() {
    let app = spawn_app().await;
    let bob = bob_of_globex(&app).await;
    let invited_at = app.clock_now();
    let invited = invite_bob(&app).await;

    app.advance(TimeDelta::minutes(5));
    let resent = app.resend(&invited.id).await.unwrap();
    assert_shows_the_invitation(&resent, invited_at);
    let mut promote = app.update_request(bob.user_id);
    promote.role = Some(pb::Role::Engineers as i32);
    let promoted = app.update(&app.admin_token, promote).await.unwrap();

    assert_eq!(promoted.role(), pb::Role::Engineers);
    assert_shows_the_invitation(&promoted, invited_at);
    let stored = entity::user::Entity::find_by_id(bob.user_id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.name, "Bob Boss",
        "the user's own profile is untouched"
    );
    assert_eq!(stored.language, Language::De.code());
    assert!(stored.two_factor_enabled);
}

#[tokio::test]
async fn search_finds_a_pending_member_by_the_invited_name_and_email_never_by_their_own_name() {
    let app = spawn_app().await;
    let _bob = bob_of_globex(&app).await;
    let invited = invite_bob(&app).await;
    let only_bob = (vec![invited.id.clone()], 1);
    let nobody = (Vec::<String>::new(), 0);

    assert_eq!(find(&app, "Bob Boss", None).await, nobody);
    assert_eq!(find(&app, "boss", None).await, nobody);
    assert_eq!(find(&app, "from sales", None).await, only_bob);
    assert_eq!(find(&app, "bob@globex", None).await, only_bob);
    assert_eq!(
        find(&app, "bob", Some(true)).await,
        nobody,
        "two-factor reads off until accepted"
    );
    assert_eq!(find(&app, "bob", Some(false)).await, only_bob);
}

#[tokio::test]
async fn after_accepting_the_account_sees_the_users_own_profile() {
    let app = spawn_app().await;
    let bob = bob_of_globex(&app).await;
    let invited = invite_bob(&app).await;
    let mail = app.mail.wait_for(1).await.remove(0);

    app.accept(&mail.token(), None).await.unwrap();

    let got = get(&app, &app.admin_token, app.account_id, bob.user_id).await;
    assert_eq!(got.status(), pb::UserStatus::Active);
    assert_shows_bob_himself(&got, &bob);
    let only_bob = (vec![invited.id.clone()], 1);
    let nobody = (Vec::<String>::new(), 0);
    assert_eq!(find(&app, "bob boss", None).await, only_bob);
    assert_eq!(find(&app, "from sales", None).await, nobody);
    assert_eq!(find(&app, "bob", Some(true)).await, only_bob);
    assert_eq!(find(&app, "bob", Some(false)).await, nobody);
}

#[tokio::test]
async fn the_account_where_the_user_is_active_sees_their_own_profile_throughout() {
    let app = spawn_app().await;
    let bob = bob_of_globex(&app).await;
    let in_globex = || get(&app, &bob.token, bob.account_id, bob.user_id);
    let before = in_globex().await;
    assert_shows_bob_himself(&before, &bob);

    invite_bob(&app).await;
    assert_eq!(in_globex().await, before);
    let mail = app.mail.wait_for(1).await.remove(0);
    app.accept(&mail.token(), None).await.unwrap();
    assert_eq!(in_globex().await, before);
}

#[tokio::test]
async fn the_email_to_an_existing_user_addresses_them_by_their_own_name_and_language() {
    let app = spawn_app().await;
    let _bob = bob_of_globex(&app).await;
    invite_bob(&app).await;
    // A new user is addressed as the invitation names them.
    let mut newcomer = invite_request(
        app.account_id,
        "Ada Lovelace",
        "ada@example.com",
        pb::Role::Users,
    );
    newcomer.language = pb::Language::Zh as i32;
    app.users
        .clone()
        .invite_user(with_token(&app.admin_token, newcomer))
        .await
        .unwrap();

    let mut messages: Vec<InvitationEmail> = entity::outbox::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| serde_json::from_str(&row.payload).unwrap())
        .collect();
    messages.sort_by(|a, b| a.to.cmp(&b.to));
    let seen: Vec<_> = messages
        .iter()
        .map(|message| {
            (
                message.to.as_str(),
                message.kind,
                message.invitee_name.as_str(),
                message.language,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "ada@example.com",
                InvitationKind::NewUser,
                "Ada Lovelace",
                Language::Zh
            ),
            (
                "bob@globex.example",
                InvitationKind::ExistingUser,
                "Bob Boss",
                Language::De
            ),
        ]
    );
}

#[tokio::test]
async fn audit_events_about_a_pending_member_carry_no_profile() {
    let app = spawn_app().await;
    let bob = bob_of_globex(&app).await;
    let invited = invite_bob(&app).await;
    app.advance(TimeDelta::minutes(5));
    app.resend(&invited.id).await.unwrap();
    let mut promote = app.update_request(bob.user_id);
    promote.role = Some(pb::Role::Engineers as i32);
    app.update(&app.admin_token, promote).await.unwrap();

    let events = app
        .audit(pb::ListAuditEventsRequest {
            account_id: app.account_id.to_string(),
            target_user_id: Some(invited.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .events;

    assert_eq!(events.len(), 3, "{events:?}");
    let changes: Vec<_> = events
        .iter()
        .flat_map(|event| &event.changes)
        .map(|change| {
            (
                change.field.as_str(),
                change.before.as_str(),
                change.after.as_str(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [("role", "ROLE_USERS", "ROLE_ENGINEERS")],
        "the role only"
    );
    let recorded = format!("{events:?}");
    for profile in ["Bob Boss", "Robert"] {
        assert!(!recorded.contains(profile), "{profile} in {recorded}");
    }
}

#[tokio::test]
async fn memberships_made_before_the_invited_profile_take_their_users_profile() {
    let database = fresh_database().await;
    let db = store::connect(database.url()).await.unwrap();
    Migrator::up(&db, Some(7)).await.unwrap();
    let at: DateTime<Utc> = "2026-11-20T08:30:00Z".parse().unwrap();
    let invited_at = at + TimeDelta::days(3);
    let (account_id, user_id, membership_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let rows = [
        Query::insert()
            .into_table("accounts")
            .columns(["id", "name", "created_at"])
            .values_panic([account_id.into(), "Acme".into(), at.into()])
            .to_owned(),
        Query::insert()
            .into_table("users")
            .columns([
                "id",
                "email",
                "name",
                "name_lower",
                "language",
                "activated",
                "two_factor_enabled",
                "created_at",
            ])
            .values_panic([
                user_id.into(),
                "grace@navy.example".into(),
                "Grace HÖPPER".into(),
                "grace höpper".into(),
                "de".into(),
                true.into(),
                true.into(),
                at.into(),
            ])
            .to_owned(),
        Query::insert()
            .into_table("memberships")
            .columns([
                "id",
                "account_id",
                "user_id",
                "role",
                "cloud_access",
                "status",
                "invited_at",
                "invitation_expires_at",
            ])
            .values_panic([
                membership_id.into(),
                account_id.into(),
                user_id.into(),
                Role::Users.id().into(),
                "[]".into(),
                "invited".into(),
                invited_at.into(),
                (invited_at + TimeDelta::days(1)).into(),
            ])
            .to_owned(),
    ];
    for row in &rows {
        db.execute(row).await.unwrap();
    }

    Migrator::up(&db, None).await.unwrap();

    let backfilled = || async {
        let membership = entity::membership::Entity::find_by_id(membership_id)
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        (
            membership.invited_name,
            membership.invited_name_lower,
            membership.invited_language,
            membership.created_at,
        )
    };
    let expected = (
        "Grace HÖPPER".to_string(),
        "grace höpper".to_string(),
        "de".to_string(),
        invited_at,
    );
    assert_eq!(backfilled().await, expected);
    // The migration can be undone and done again.
    Migrator::down(&db, Some(1)).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    assert_eq!(backfilled().await, expected);
}
