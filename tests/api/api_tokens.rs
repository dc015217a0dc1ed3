use chrono::TimeDelta;
use sea_orm::EntityTrait;
use tonic::Code;
use usermgmt::{domain::Role, grpc::pb, store::entity};

use crate::helpers::{bad_fields, reason, spawn_app, with_token};

#[tokio::test]
async fn a_token_is_shown_once_stored_as_a_hash_and_works_at_once() {
    let app = spawn_app().await;
    let (token, secret) = app
        .create_token(&app.admin_token, pb::Role::Engineers, None)
        .await
        .unwrap();
    assert!(secret.starts_with("umk_") && secret.len() > 40, "{secret}");
    assert_eq!(token.role(), pb::Role::Engineers);
    assert!(token.expires_at.is_none(), "no expiry: permanent");
    assert_eq!(token.issuer.as_ref().unwrap().email, "admin@acme.example");

    let stored = entity::api_token::Entity::find_by_id(token.id.parse::<uuid::Uuid>().unwrap())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.secret_hash, secret);
    assert!(!stored.secret_hash.contains(&secret[4..]));
    assert!(app.list(&secret, app.list_request()).await.is_ok());
}

#[tokio::test]
async fn a_token_role_may_not_exceed_its_issuers_and_bad_input_is_named() {
    let app = spawn_app().await;
    let engineer = app
        .add_member(
            app.account_id,
            "e@acme.example",
            Role::Engineers,
            Role::Engineers,
        )
        .await;
    let status = app
        .create_token(&engineer.token, pb::Role::Administrators, None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "ROLE_ABOVE_CALLER");
    app.create_token(&engineer.token, pb::Role::PurgeAndPrefetchApiWeb, None)
        .await
        .unwrap();

    let past = app
        .create_token(&app.admin_token, pb::Role::Users, Some(app.clock_now()))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&past), ["expires_at"]);
    let status = app
        .tokens
        .clone()
        .create_api_token(with_token(
            &app.admin_token,
            pb::CreateApiTokenRequest {
                account_id: app.account_id.to_string(),
                name: " ".into(),
                description: "d".repeat(1001),
                role: 0,
                expires_at: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["name", "description", "role"]);
}

#[tokio::test]
async fn an_account_holds_at_most_100_live_tokens_and_a_member_at_most_50() {
    let app = spawn_app().await;
    // The bootstrap token is the administrator's first; one more expires and then no longer
    // counts.
    let (short, _) = app
        .create_token(
            &app.admin_token,
            pb::Role::Users,
            Some(app.clock_now() + TimeDelta::minutes(1)),
        )
        .await
        .unwrap();
    for _ in 0..48 {
        app.create_token(&app.admin_token, pb::Role::Users, None)
            .await
            .unwrap();
    }
    let own_cap = app
        .create_token(&app.admin_token, pb::Role::Users, None)
        .await
        .unwrap_err();
    assert_eq!(own_cap.code(), Code::ResourceExhausted);
    assert_eq!(reason(&own_cap), "MEMBER_API_TOKEN_LIMIT_REACHED");

    // A second and a third member fill the account: 50 + 49 + 1 (the helper issues each
    // member's first token directly).
    let other = app
        .add_member(
            app.account_id,
            "second@acme.example",
            Role::Administrators,
            Role::Administrators,
        )
        .await;
    for _ in 0..48 {
        app.create_token(&other.token, pb::Role::Users, None)
            .await
            .unwrap();
    }
    let third = app
        .add_member(
            app.account_id,
            "third@acme.example",
            Role::Administrators,
            Role::Users,
        )
        .await;
    let full = app
        .create_token(&third.token, pb::Role::Users, None)
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted);
    assert_eq!(reason(&full), "API_TOKEN_LIMIT_REACHED");

    app.advance(TimeDelta::minutes(1));
    let (replacement, _) = app
        .create_token(&app.admin_token, pb::Role::Users, None)
        .await
        .unwrap();
    assert_ne!(replacement.id, short.id);
    assert_eq!(
        app.create_token(&app.admin_token, pb::Role::Users, None)
            .await
            .unwrap_err()
            .code(),
        Code::ResourceExhausted
    );
    app.delete_token(&app.admin_token, &replacement.id)
        .await
        .unwrap();
    app.create_token(&app.admin_token, pb::Role::Users, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn administrators_see_every_token_and_members_only_their_own() {
    let app = spawn_app().await;
    let member = app
        .add_member(
            app.account_id,
            "m@acme.example",
            Role::Engineers,
            Role::Engineers,
        )
        .await;
    let all = app.list_tokens(&app.admin_token, None).await.unwrap();
    assert_eq!(all.len(), 2);
    let own = app.list_tokens(&member.token, None).await.unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(
        own[0].issuer.as_ref().unwrap().user_id,
        member.user_id.to_string()
    );

    let by_member = app
        .list_tokens(&app.admin_token, Some(member.user_id.to_string()))
        .await
        .unwrap();
    assert_eq!(by_member, own);
    let others = app
        .list_tokens(&member.token, Some(app.admin_id.to_string()))
        .await
        .unwrap_err();
    assert_eq!(others.code(), Code::PermissionDenied);

    let mut request = pb::ListApiTokensRequest {
        account_id: app.account_id.to_string(),
        page_size: 1,
        ..Default::default()
    };
    let first = app
        .tokens
        .clone()
        .list_api_tokens(with_token(&app.admin_token, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.tokens.len(), 1);
    request.page_token = first.next_page_token;
    let second = app
        .tokens
        .clone()
        .list_api_tokens(with_token(&app.admin_token, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.tokens.len(), 1);
    assert_ne!(second.tokens[0].id, first.tokens[0].id);
    assert!(second.next_page_token.is_empty());
}

#[tokio::test]
async fn members_delete_their_own_tokens_administrators_any_and_a_deleted_token_stops_working() {
    let app = spawn_app().await;
    let member = app
        .add_member(
            app.account_id,
            "m@acme.example",
            Role::Engineers,
            Role::Engineers,
        )
        .await;
    let admin_tokens = app
        .list_tokens(&app.admin_token, Some(app.admin_id.to_string()))
        .await
        .unwrap();
    let hidden = app
        .delete_token(&member.token, &admin_tokens[0].id)
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);

    let (spare, spare_secret) = app
        .create_token(&member.token, pb::Role::Users, None)
        .await
        .unwrap();
    app.delete_token(&member.token, &spare.id).await.unwrap();
    assert_eq!(
        app.list(&spare_secret, app.list_request())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        app.delete_token(&member.token, &spare.id)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound,
        "final"
    );

    let own = app.list_tokens(&member.token, None).await.unwrap();
    app.delete_token(&app.admin_token, &own[0].id)
        .await
        .unwrap();
    assert_eq!(
        app.list(&member.token, app.list_request())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn last_use_is_kept_to_the_minute() {
    let app = spawn_app().await;
    let (token, secret) = app
        .create_token(&app.admin_token, pb::Role::Users, None)
        .await
        .unwrap();
    let last_used = || async {
        app.list_tokens(&app.admin_token, None)
            .await
            .unwrap()
            .into_iter()
            .find(|listed| listed.id == token.id)
            .unwrap()
            .last_used_at
            .map(|at| at.seconds)
    };
    assert_eq!(last_used().await, None);
    let first_use = app.clock_now().timestamp();
    app.list(&secret, app.list_request()).await.unwrap();
    assert_eq!(last_used().await, Some(first_use));
    app.advance(TimeDelta::seconds(30));
    app.list(&secret, app.list_request()).await.unwrap();
    assert_eq!(
        last_used().await,
        Some(first_use),
        "not rewritten within a minute"
    );
    app.advance(TimeDelta::seconds(31));
    app.list(&secret, app.list_request()).await.unwrap();
    assert_eq!(last_used().await, Some(app.clock_now().timestamp()));
}
