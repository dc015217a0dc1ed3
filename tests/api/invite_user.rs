use chrono::TimeDelta;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    TransactionTrait, sea_query::Expr,
};
use tonic::Code;
use usermgmt::{
    domain::{ApiTokenSecret, InvitationEmail, InvitationKind, Language, Role, SecretHash},
    grpc::pb,
    store::entity,
};
use uuid::Uuid;

use crate::helpers::{bad_fields, invite_request, reason, spawn_app, spawn_app_with, with_token};

#[tokio::test]
async fn inviting_a_new_email_creates_an_invited_user_listed_at_once() {
    // Without the notifier, the email waits in the outbox as committed.
    let app = spawn_app_with(false).await;
    let invited_at = app.clock_now();

    let user = app
        .invite(
            "  Ada Lovelace ",
            "Ada.Lovelace@Example.COM",
            pb::Role::Engineers,
        )
        .await
        .unwrap();

    assert_eq!(user.name, "Ada Lovelace");
    assert_eq!(user.email, "ada.lovelace@example.com");
    assert_eq!(user.status(), pb::UserStatus::Invited);
    assert_eq!(user.role(), pb::Role::Engineers);
    assert_eq!(user.account_id, app.account_id.to_string());
    let expires = user.invitation_expires_at.unwrap();
    assert_eq!(
        expires.seconds,
        (invited_at + TimeDelta::hours(24)).timestamp()
    );
    assert_eq!(user.service_roles.len(), 5);
    assert!(user.accepted_at.is_none());

    let listed = app
        .list(&app.admin_token, app.list_request())
        .await
        .unwrap();
    assert_eq!(listed.total_size, 2);
    assert!(listed.users.iter().any(|listed| listed.id == user.id));

    let stored = entity::user::Entity::find_by_id(user.id.parse::<uuid::Uuid>().unwrap())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.activated);
    assert!(stored.password_hash.is_none());

    let emails = entity::outbox::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(emails.len(), 1, "one email waits for the notifier");
    let message: InvitationEmail = serde_json::from_str(&emails[0].payload).unwrap();
    assert_eq!(message.kind, InvitationKind::NewUser);
    assert_eq!(message.to, "ada.lovelace@example.com");
    assert_eq!(message.language, Language::En);
    assert_eq!(message.account_name, "Acme");
    assert_eq!(message.inviter_name, "Alice Admin");

    let invitation = entity::invitation::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let secret = message.secret.as_deref().expect("the link's secret");
    assert_eq!(secret.len(), 43);
    assert_ne!(
        invitation.secret_hash, secret,
        "only a hash of the secret is stored"
    );
    assert_eq!(
        invitation.secret_hash,
        usermgmt::domain::SecretHash::of(secret).as_str()
    );
}

#[tokio::test]
async fn inviting_a_user_of_another_account_reuses_the_user_and_sends_the_existing_user_email() {
    let app = spawn_app().await;
    let (_, bob_id, _) = app.other_account("bob@globex.example").await;

    let user = app
        .invite("Somebody Else", "BOB@globex.example", pb::Role::Users)
        .await
        .unwrap();

    assert_eq!(user.id, bob_id.to_string());
    assert_eq!(
        user.name, "Somebody Else",
        "the account sees the name it gave until they accept (R17)"
    );
    let stored = entity::user::Entity::find_by_id(bob_id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.name, "Bob Boss",
        "an existing user's name is not changed"
    );
    assert_eq!(user.status(), pb::UserStatus::Invited);
    let email = entity::outbox::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let message: InvitationEmail = serde_json::from_str(&email.payload).unwrap();
    assert_eq!(message.kind, InvitationKind::ExistingUser);
    assert_eq!(app.count_users().await, 2);
}

#[tokio::test]
async fn inviting_a_current_member_is_refused_with_already_exists() {
    let app = spawn_app().await;
    let first = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();

    let again = app
        .invite("Ada", "ADA@example.com ", pb::Role::Engineers)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    assert_eq!(
        again.message(),
        format!(
            "User {} has already been invited to account {}",
            first.id, app.account_id
        )
    );
    assert_eq!(reason(&again), "ALREADY_INVITED");

    let admin = app
        .invite("Me", "admin@acme.example", pb::Role::Users)
        .await
        .unwrap_err();
    assert_eq!(admin.code(), Code::AlreadyExists, "an active member too");
    assert_eq!(
        entity::outbox::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn cloud_access_follows_the_role_unless_given() {
    let app = spawn_app().await;
    let client = |user: &pb::User| match user.cloud_access.clone().unwrap().scope.unwrap() {
        pb::cloud_access::Scope::Client(client) => client.role(),
        other => panic!("expected client scope, got {other:?}"),
    };
    let admin = app
        .invite("A", "a@example.com", pb::Role::Administrators)
        .await
        .unwrap();
    assert_eq!(client(&admin), pb::CloudRole::ClientAdministrator);
    let engineer = app
        .invite("E", "e@example.com", pb::Role::Engineers)
        .await
        .unwrap();
    assert_eq!(client(&engineer), pb::CloudRole::Unspecified);

    let mut request = invite_request(app.account_id, "P", "p@example.com", pb::Role::Users);
    let projects = pb::CloudAccess {
        scope: Some(pb::cloud_access::Scope::Projects(pb::ProjectAccess {
            roles: vec![
                pb::ProjectRole {
                    project_id: 11,
                    role: pb::CloudRole::Observer as i32,
                },
                pb::ProjectRole {
                    project_id: 12,
                    role: pb::CloudRole::ProjectAdministrator as i32,
                },
            ],
        })),
    };
    request.cloud_access = Some(projects.clone());
    let user = app
        .users
        .clone()
        .invite_user(with_token(&app.admin_token, request))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.cloud_access, Some(projects));
}

#[tokio::test]
async fn each_bad_input_is_refused_naming_its_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let base = || invite_request(app.account_id, "Ada", "ada@example.com", pb::Role::Users);
    let cases: Vec<(&str, pb::InviteUserRequest, Vec<&str>)> = vec![
        (
            "bad email",
            pb::InviteUserRequest {
                email: "ada@".into(),
                ..base()
            },
            vec!["email"],
        ),
        (
            "blank name",
            pb::InviteUserRequest {
                name: "   ".into(),
                ..base()
            },
            vec!["name"],
        ),
        (
            "256-char name",
            pb::InviteUserRequest {
                name: "n".repeat(256),
                ..base()
            },
            vec!["name"],
        ),
        (
            "unknown language",
            pb::InviteUserRequest {
                language: 99,
                ..base()
            },
            vec!["language"],
        ),
        (
            "missing language",
            pb::InviteUserRequest {
                language: 0,
                ..base()
            },
            vec!["language"],
        ),
        (
            "missing role",
            pb::InviteUserRequest { role: 0, ..base() },
            vec!["role"],
        ),
        (
            "unknown role",
            pb::InviteUserRequest { role: 4, ..base() },
            vec!["role"],
        ),
        (
            "bad account id",
            pb::InviteUserRequest {
                account_id: "acme".into(),
                ..base()
            },
            vec!["account_id"],
        ),
        (
            "everything",
            pb::InviteUserRequest {
                account_id: String::new(),
                name: String::new(),
                email: "x".repeat(300),
                language: -1,
                role: 0,
                cloud_access: None,
                request_id: None,
                invitation_ttl: None,
                send_email: None,
            },
            vec!["account_id", "name", "email", "language", "role"],
        ),
    ];
    for (case, request, fields) in cases {
        let status = app
            .users
            .clone()
            .invite_user(with_token(&app.admin_token, request))
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&status), fields, "{case}");
    }
    assert_eq!(app.count_users().await, 1, "only the administrator exists");
    assert!(
        entity::outbox::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn only_administrators_may_invite() {
    let app = spawn_app().await;
    let engineer = app
        .add_member(
            app.account_id,
            "eng@acme.example",
            Role::Engineers,
            Role::Engineers,
        )
        .await;
    let status = app
        .users
        .clone()
        .invite_user(with_token(
            &engineer.token,
            invite_request(app.account_id, "Ada", "ada@example.com", pb::Role::Users),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "ADMINISTRATOR_REQUIRED");

    // An administrator's token of a lower role acts with that lower role.
    let weak_token = app
        .issue_token(app.account_id, app.admin_id, Role::Engineers, None)
        .await;
    let status = app
        .users
        .clone()
        .invite_user(with_token(
            &weak_token,
            invite_request(app.account_id, "Ada", "ada@example.com", pb::Role::Users),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let nobody = entity::user::Entity::find()
        .filter(entity::user::Column::Email.eq("ada@example.com"))
        .one(&app.db)
        .await
        .unwrap();
    assert!(nobody.is_none());
}

#[tokio::test]
async fn concurrent_invitations_of_one_email_let_exactly_one_succeed() {
    let app = spawn_app().await;
    let attempts = (0..8).map(|_| app.invite("Ada", "ada@example.com", pb::Role::Users));
    let results = futures::future::join_all(attempts).await;

    let succeeded = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(succeeded, 1, "{results:?}");
    for result in results.iter().filter_map(|result| result.as_ref().err()) {
        assert_eq!(result.code(), Code::AlreadyExists, "{result:?}");
    }
    assert_eq!(app.count_users().await, 2);
}

#[tokio::test]
async fn concurrent_invitations_of_one_new_email_into_two_accounts_share_one_user() {
    let app = spawn_app().await;
    let (globex, _, globex_token) = app.other_account("bob@globex.example").await;
    let into_acme = app.invite("Ada", "ada@example.com", pb::Role::Users);
    let mut client = app.users.clone();
    let into_globex = client.invite_user(with_token(
        &globex_token,
        invite_request(globex, "Ada", "ada@example.com", pb::Role::Users),
    ));
    let (acme, globex) = tokio::join!(into_acme, into_globex);
    let acme = acme.unwrap();
    let globex = globex.unwrap().into_inner().user.unwrap();
    assert_eq!(acme.id, globex.id);
    assert_eq!(app.count_users().await, 3);
}

/// InviteUser finds its API token in the invitation's own statement, under the account's
/// lock. A token that is not live is refused before the request is read or the account is
/// looked up, as the auth layer refuses it on other calls; a live one's use is recorded.
#[tokio::test]
async fn an_invitations_token_is_checked_in_its_transaction_and_refused_first_when_not_live() {
    let app = spawn_app().await;
    let users_before = app.count_users().await;
    // One token per fault: a token refused once is then refused from memory, before the
    // statement this test is about.
    let mut expiring = Vec::new();
    for _ in 0..4 {
        let until = app.clock_now() + TimeDelta::hours(1);
        expiring.push(
            app.issue_token(
                app.account_id,
                app.admin_id,
                Role::Administrators,
                Some(until),
            )
            .await,
        );
    }
    let missing_account = Uuid::now_v7();
    let invite = |token: &str, request: pb::InviteUserRequest| {
        let mut users = app.users.clone();
        let request = with_token(token, request);
        async move { users.invite_user(request).await }
    };
    let ada = |account_id| invite_request(account_id, "Ada", "ada@example.com", pb::Role::Users);
    let mut malformed = ada(app.account_id);
    malformed.email = "not an email".into();
    let faults = || [malformed.clone(), ada(missing_account), ada(app.account_id)];

    let invalid = invite(&expiring[3], malformed.clone()).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let absent = invite(&expiring[3], ada(missing_account))
        .await
        .unwrap_err();
    assert_eq!(absent.code(), Code::NotFound);
    assert_eq!(reason(&absent), "ACCOUNT_NOT_FOUND");
    for request in faults() {
        let unknown = ApiTokenSecret::generate();
        let status = invite(unknown.expose(), request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    app.advance(TimeDelta::hours(1));
    for (request, token) in faults().into_iter().zip(&expiring) {
        let status = invite(token, request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "expired: {status:?}");
    }
    assert_eq!(app.count_users().await, users_before, "nobody was invited");

    let fresh = app
        .issue_token(app.account_id, app.admin_id, Role::Administrators, None)
        .await;
    let stored = || async {
        entity::api_token::Entity::find()
            .filter(entity::api_token::Column::SecretHash.eq(SecretHash::of(&fresh).as_str()))
            .one(&app.db)
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(stored().await.last_used_at, None);
    invite(&fresh, ada(app.account_id)).await.unwrap();
    assert_eq!(stored().await.last_used_at, Some(app.clock_now()));

    let mut deleted = stored().await.into_active_model();
    deleted.deleted_at = Set(Some(app.clock_now()));
    deleted.update(&app.db).await.unwrap();
    let grace = invite_request(
        app.account_id,
        "Grace",
        "grace@example.com",
        pb::Role::Users,
    );
    let status = invite(&fresh, grace).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(app.count_users().await, users_before + 1, "only Ada");
}

/// A made-up API token never opens a write transaction: it is looked up first, on a read
/// connection, so it is refused even while the account's row is held by a writer.
#[tokio::test]
async fn a_made_up_token_is_refused_without_waiting_for_the_writers() {
    let app = spawn_app().await;
    let writer = app.db.begin().await.unwrap();
    entity::account::Entity::update_many()
        .col_expr(
            entity::account::Column::Name,
            Expr::col(entity::account::Column::Name),
        )
        .filter(entity::account::Column::Id.eq(app.account_id))
        .exec(&writer)
        .await
        .unwrap();
    for _ in 0..3 {
        let made_up = ApiTokenSecret::generate();
        let mut users = app.users.clone();
        let call = users.invite_user(with_token(
            made_up.expose(),
            invite_request(app.account_id, "Ada", "ada@example.com", pb::Role::Users),
        ));
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), call)
            .await
            .expect("answered while the writer holds the account")
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    writer.rollback().await.unwrap();
}
