use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Request;
use usermgmt::{domain::Role, grpc::pb, store::entity::audit_event};

use crate::helpers::{spawn_app, with_token};

fn actions(response: &pb::ListAuditEventsResponse) -> Vec<pb::AuditAction> {
    response.events.iter().map(|event| event.action()).collect()
}

#[tokio::test]
async fn every_change_leaves_an_event_with_actor_target_and_request_id() {
    let app = spawn_app().await;
    let mut invite = with_token(
        &app.admin_token,
        crate::helpers::invite_request(app.account_id, "Ada", "ada@example.com", pb::Role::Users),
    );
    invite
        .metadata_mut()
        .insert("x-request-id", "req-invite-1".parse().unwrap());
    let ada = app
        .users
        .clone()
        .invite_user(invite)
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let token = app.mail.wait_for(1).await[0].token();
    app.advance(chrono::TimeDelta::minutes(1));
    app.resend(&ada.id).await.unwrap();
    let token_after_resend = app.mail.wait_for(2).await[1].token();
    assert_ne!(token, token_after_resend);
    app.accept(&token_after_resend, Some("12345678"))
        .await
        .unwrap();
    let mut promote = app.update_request(&ada.id);
    promote.role = Some(pb::Role::Engineers as i32);
    app.update(&app.admin_token, promote).await.unwrap();
    let (api_token, secret) = app
        .create_token(&app.admin_token, pb::Role::Users, None)
        .await
        .unwrap();
    app.delete_token(&app.admin_token, &api_token.id)
        .await
        .unwrap();
    app.delete(&app.admin_token, &ada.id).await.unwrap();

    let all = app
        .audit(pb::ListAuditEventsRequest {
            account_id: app.account_id.to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    use pb::AuditAction::*;
    assert_eq!(
        actions(&all),
        [
            UserDeleted,
            ApiTokenDeleted,
            ApiTokenCreated,
            UserUpdated,
            InvitationAccepted,
            InvitationResent,
            UserInvited
        ],
        "newest first"
    );
    let invited = all.events.last().unwrap();
    assert_eq!(invited.request_id, "req-invite-1");
    assert_eq!(invited.actor_user_id, app.admin_id.to_string());
    assert_eq!(invited.target_user_id, ada.id);
    let accepted = &all.events[4];
    assert_eq!(accepted.actor_user_id, ada.id, "the invitee accepts");
    let updated = &all.events[3];
    let role_change = updated
        .changes
        .iter()
        .find(|change| change.field == "role")
        .unwrap();
    assert_eq!(
        (role_change.before.as_str(), role_change.after.as_str()),
        ("ROLE_USERS", "ROLE_ENGINEERS"),
        "roles by the API's names"
    );
    assert_eq!(all.events[1].target_token_id, api_token.id);
    assert!(all.events.iter().all(|event| !event.request_id.is_empty()));

    let raw = format!("{all:?}");
    for secret in [&secret, &token, &token_after_resend] {
        assert!(
            !raw.contains(secret.as_str()),
            "no secret in the audit trail"
        );
    }
}

#[tokio::test]
async fn events_filter_by_target_and_action_and_page() {
    let app = spawn_app().await;
    let member = app
        .add_member_without_token(app.account_id, "m@acme.example", Role::Users)
        .await;
    for name in ["One", "Two", "Three"] {
        let mut own = app.update_request(app.admin_id);
        own.name = Some(name.into());
        app.update(&app.admin_token, own).await.unwrap();
    }
    let mut promote = app.update_request(member);
    promote.role = Some(pb::Role::Engineers as i32);
    app.update(&app.admin_token, promote).await.unwrap();

    let about_member = app
        .audit(pb::ListAuditEventsRequest {
            account_id: app.account_id.to_string(),
            target_user_id: Some(member.to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(about_member.events.len(), 1);

    let mut request = pb::ListAuditEventsRequest {
        account_id: app.account_id.to_string(),
        page_size: 2,
        action: Some(pb::AuditAction::UserUpdated as i32),
        ..Default::default()
    };
    let first = app.audit(request.clone()).await.unwrap();
    assert_eq!(first.events.len(), 2);
    request.page_token = first.next_page_token.clone();
    let second = app.audit(request).await.unwrap();
    assert_eq!(second.events.len(), 2);
    assert!(second.next_page_token.is_empty());

    let mut plain = app.users.clone();
    let status = plain
        .list_audit_events(Request::new(pb::ListAuditEventsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn enum_valued_changes_read_as_the_api_names_them_whatever_was_stored() {
    let app = spawn_app().await;
    let member = app
        .add_member_without_token(app.account_id, "m@acme.example", Role::Users)
        .await;
    let mut promote = app.update_request(member);
    promote.role = Some(pb::Role::PurgeAndPrefetchApiWeb as i32);
    app.update(&app.admin_token, promote).await.unwrap();
    let mut own = app.update_request(app.admin_id);
    own.language = Some(pb::Language::De as i32);
    own.two_factor_enabled = Some(true);
    app.update(&app.admin_token, own).await.unwrap();

    // Stored as events recorded before the API named these values were: the role id and
    // the language code.
    let stored: Vec<String> = audit_event::Entity::find()
        .filter(audit_event::Column::AccountId.eq(app.account_id))
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.changes)
        .collect();
    let stored = stored.join("\n");
    assert!(
        stored.contains(r#""before":"2","after":"3009""#),
        "{stored}"
    );
    assert!(stored.contains(r#""before":"en","after":"de""#), "{stored}");

    let listed = app
        .audit(pb::ListAuditEventsRequest {
            account_id: app.account_id.to_string(),
            action: Some(pb::AuditAction::UserUpdated as i32),
            ..Default::default()
        })
        .await
        .unwrap();
    let changes: Vec<(&str, &str, &str)> = listed
        .events
        .iter()
        .flat_map(|event| &event.changes)
        .map(|c| (c.field.as_str(), c.before.as_str(), c.after.as_str()))
        .collect();
    for expected in [
        ("role", "ROLE_USERS", "ROLE_PURGE_AND_PREFETCH_API_WEB"),
        ("language", "LANGUAGE_EN", "LANGUAGE_DE"),
        ("two_factor_enabled", "false", "true"),
    ] {
        assert!(changes.contains(&expected), "{expected:?} in {changes:?}");
    }
}
