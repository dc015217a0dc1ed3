use chrono::TimeDelta;
use tonic::Code;
use usermgmt::{domain::Role, grpc::pb};

use crate::helpers::{JWT_SECRET, TestApp, bad_fields, jwt, reason, spawn_app, with_bearer};

async fn get(app: &TestApp, user_id: impl ToString) -> pb::User {
    app.users
        .clone()
        .get_user(crate::helpers::with_token(
            &app.admin_token,
            pb::GetUserRequest {
                account_id: app.account_id.to_string(),
                user_id: user_id.to_string(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

fn client_admin(user: &pb::User) -> bool {
    matches!(
        user.cloud_access.as_ref().and_then(|access| access.scope.clone()),
        Some(pb::cloud_access::Scope::Client(pb::ClientAccess { role })) if role == pb::CloudRole::ClientAdministrator as i32
    )
}

#[tokio::test]
async fn an_administrator_changes_another_members_role_and_cloud_access_only() {
    let app = spawn_app().await;
    let member = app
        .add_member_without_token(app.account_id, "m@acme.example", Role::Users)
        .await;

    let mut promote = app.update_request(member);
    promote.role = Some(pb::Role::Administrators as i32);
    let promoted = app.update(&app.admin_token, promote).await.unwrap();
    assert_eq!(promoted.role(), pb::Role::Administrators);
    assert!(client_admin(&promoted), "cloud access follows the new role");

    let mut projects = app.update_request(member);
    let access = pb::CloudAccess {
        scope: Some(pb::cloud_access::Scope::Projects(pb::ProjectAccess {
            roles: vec![pb::ProjectRole {
                project_id: 5,
                role: pb::CloudRole::Observer as i32,
            }],
        })),
    };
    projects.cloud_access = Some(access.clone());
    assert_eq!(
        app.update(&app.admin_token, projects)
            .await
            .unwrap()
            .cloud_access,
        Some(access)
    );

    for (field, request) in [
        (
            "name",
            pb::UpdateUserRequest {
                name: Some("New".into()),
                ..app.update_request(member)
            },
        ),
        (
            "language",
            pb::UpdateUserRequest {
                language: Some(pb::Language::De as i32),
                ..app.update_request(member)
            },
        ),
        (
            "two_factor_enabled",
            pb::UpdateUserRequest {
                two_factor_enabled: Some(true),
                ..app.update_request(member)
            },
        ),
    ] {
        let status = app.update(&app.admin_token, request).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{field}");
        assert_eq!(reason(&status), "FIELD_NOT_EDITABLE");
        assert!(status.message().ends_with(field), "{}", status.message());
    }

    // One forbidden field refuses the whole change.
    let mut mixed = app.update_request(member);
    mixed.role = Some(pb::Role::Users as i32);
    mixed.name = Some("Sneaky".into());
    let status = app.update(&app.admin_token, mixed).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let unchanged = get(&app, member).await;
    assert_eq!(unchanged.role(), pb::Role::Administrators);
    assert_eq!(unchanged.name, "m@acme.example");
}

#[tokio::test]
async fn an_administrator_changes_their_own_name_role_and_language_but_not_their_cloud_access() {
    let app = spawn_app().await;
    app.add_member_without_token(
        app.account_id,
        "second-admin@acme.example",
        Role::Administrators,
    )
    .await;
    let mut own = app.update_request(app.admin_id);
    own.name = Some("  Alice A. Admin ".into());
    own.language = Some(pb::Language::Ru as i32);
    own.role = Some(pb::Role::Administrators as i32);
    let changed = app.update(&app.admin_token, own).await.unwrap();
    assert_eq!(changed.name, "Alice A. Admin");
    assert_eq!(changed.language(), pb::Language::Ru);

    // Their own bootstrap token has the ADMINISTRATORS role: it must go before they step down.
    let mut step_down = app.update_request(app.admin_id);
    step_down.role = Some(pb::Role::Engineers as i32);
    let status = app
        .update(&app.admin_token, step_down.clone())
        .await
        .unwrap_err();
    assert_eq!(
        status.message(),
        "The specified user has issued a token with a higher role."
    );
    let (engineer_token, secret) = app
        .create_token(&app.admin_token, pb::Role::Engineers, None)
        .await
        .unwrap();
    let bootstrap = app
        .list_tokens(&app.admin_token, None)
        .await
        .unwrap()
        .into_iter()
        .find(|token| token.id != engineer_token.id)
        .unwrap();
    app.delete_token(&app.admin_token, &bootstrap.id)
        .await
        .unwrap();
    // Their engineer token caps them at ENGINEERS; their own sign-in (a JWT) does not.
    let bearer = jwt(
        &app.admin_id.to_string(),
        app.clock_now() + TimeDelta::hours(1),
        JWT_SECRET,
    );
    let changed = app
        .users
        .clone()
        .update_user(with_bearer(&bearer, step_down))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(changed.role(), pb::Role::Engineers);

    let mut access = app.update_request(app.admin_id);
    access.cloud_access = Some(pb::CloudAccess {
        scope: Some(pb::cloud_access::Scope::Client(pb::ClientAccess {
            role: 0,
        })),
    });
    // An engineer now; either way their cloud access is not theirs to change.
    assert_eq!(
        app.update(&secret, access).await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn a_member_changes_their_own_name_language_and_two_factor_only() {
    let app = spawn_app().await;
    let member = app
        .add_member(
            app.account_id,
            "m@acme.example",
            Role::Engineers,
            Role::Engineers,
        )
        .await;
    let other = app
        .add_member_without_token(app.account_id, "o@acme.example", Role::Users)
        .await;

    let mut own = app.update_request(member.user_id);
    own.name = Some("Mia".into());
    own.language = Some(pb::Language::Zh as i32);
    own.two_factor_enabled = Some(true);
    let changed = app.update(&member.token, own).await.unwrap();
    assert_eq!(
        (
            changed.name.as_str(),
            changed.language(),
            changed.two_factor_enabled
        ),
        ("Mia", pb::Language::Zh, true)
    );

    let mut promote = app.update_request(member.user_id);
    promote.role = Some(pb::Role::Administrators as i32);
    let status = app.update(&member.token, promote).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().ends_with("role"));

    let mut rename_other = app.update_request(other);
    rename_other.name = Some("Renamed".into());
    assert_eq!(
        app.update(&member.token, rename_other)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(get(&app, other).await.name, "o@acme.example");
}

#[tokio::test]
async fn the_last_administrator_cannot_be_demoted() {
    let app = spawn_app().await;
    let mut demote = app.update_request(app.admin_id);
    demote.role = Some(pb::Role::Users as i32);
    let status = app
        .update(&app.admin_token, demote.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "LAST_ADMINISTRATOR");
    assert_eq!(
        get(&app, app.admin_id).await.role(),
        pb::Role::Administrators
    );

    // An invited administrator does not count: only one who accepted keeps the account.
    app.invite("Pending", "pending@example.com", pb::Role::Administrators)
        .await
        .unwrap();
    assert_eq!(
        app.update(&app.admin_token, demote.clone())
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn a_member_cannot_be_given_a_role_below_a_live_token_they_issued() {
    let app = spawn_app().await;
    let member = app
        .add_member(
            app.account_id,
            "m@acme.example",
            Role::Engineers,
            Role::Engineers,
        )
        .await;
    let mut demote = app.update_request(member.user_id);
    demote.role = Some(pb::Role::Users as i32);

    let status = app
        .update(&app.admin_token, demote.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "The specified user has issued a token with a higher role."
    );
    assert_eq!(get(&app, member.user_id).await.role(), pb::Role::Engineers);

    let (token, _) = app
        .create_token(
            &member.token,
            pb::Role::PurgeAndPrefetchApi,
            Some(app.clock_now() + TimeDelta::days(1)),
        )
        .await
        .unwrap();
    let own = app.list_tokens(&member.token, None).await.unwrap();
    let first = own.iter().find(|listed| listed.id != token.id).unwrap();
    app.delete_token(&member.token, &first.id).await.unwrap();
    // The remaining token (PURGE_AND_PREFETCH_API) still outranks USERS until it expires.
    assert_eq!(
        app.update(&app.admin_token, demote.clone())
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    app.advance(TimeDelta::days(1));
    assert_eq!(
        app.update(&app.admin_token, demote).await.unwrap().role(),
        pb::Role::Users
    );
}

#[tokio::test]
async fn a_demotion_applies_on_the_members_very_next_call() {
    let app = spawn_app().await;
    let member = app
        .add_member_without_token(app.account_id, "m@acme.example", Role::Engineers)
        .await;
    let bearer = jwt(
        &member.to_string(),
        app.clock_now() + TimeDelta::hours(1),
        JWT_SECRET,
    );
    let create = |role: pb::Role| {
        let mut tokens = app.tokens.clone();
        let request = with_bearer(
            &bearer,
            pb::CreateApiTokenRequest {
                account_id: app.account_id.to_string(),
                name: "deploys".into(),
                role: role as i32,
                expires_at: Some(prost_types::Timestamp {
                    seconds: (app.clock_now() + TimeDelta::minutes(10)).timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            },
        );
        async move { tokens.create_api_token(request).await }
    };
    create(pb::Role::Engineers).await.unwrap();
    app.advance(TimeDelta::minutes(10));

    let mut demote = app.update_request(member);
    demote.role = Some(pb::Role::Users as i32);
    app.update(&app.admin_token, demote).await.unwrap();
    let status = create(pb::Role::Engineers).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    create(pb::Role::Users).await.unwrap();
}

#[tokio::test]
async fn bad_changes_are_invalid_arguments() {
    let app = spawn_app().await;
    let mut bad = app.update_request("not-a-uuid");
    bad.name = Some(" ".into());
    bad.role = Some(77);
    bad.language = Some(0);
    let status = app.update(&app.admin_token, bad).await.unwrap_err();
    assert_eq!(bad_fields(&status), ["user_id", "name", "language", "role"]);
    let missing = app.update_request(uuid::Uuid::now_v7());
    assert_eq!(
        app.update(&app.admin_token, missing)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}
