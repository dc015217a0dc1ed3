use chrono::TimeDelta;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Code;
use tonic_types::StatusExt;
use usermgmt::{
    domain::{InvitationEmail, Role},
    grpc::pb,
    notifier::Outcome,
    store::entity,
};

use crate::helpers::smtp::Mail;
use crate::helpers::{TestApp, bad_fields, invite_request, reason, spawn_app, with_token};

const LANGUAGES: [(pb::Language, &str, &str); 4] = [
    (
        pb::Language::En,
        "You are invited to Acme",
        "You now have access to Acme",
    ),
    (
        pb::Language::De,
        "Einladung zu Acme",
        "Sie haben jetzt Zugriff auf Acme",
    ),
    (
        pb::Language::Zh,
        "邀请您加入 Acme",
        "您已获得 Acme 的访问权限",
    ),
    (
        pb::Language::Ru,
        "Приглашение в Acme",
        "Вам открыт доступ к Acme",
    ),
];

async fn invite_in(
    app: &TestApp,
    token: &str,
    account: uuid::Uuid,
    email: &str,
    language: pb::Language,
) -> pb::User {
    let mut request = invite_request(account, "Ada Lovelace", email, pb::Role::Engineers);
    request.language = language as i32;
    app.users
        .clone()
        .invite_user(with_token(token, request))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

async fn get(app: &TestApp, user_id: &str) -> pb::User {
    app.users
        .clone()
        .get_user(with_token(
            &app.admin_token,
            pb::GetUserRequest {
                account_id: app.account_id.to_string(),
                user_id: user_id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

fn assert_invitation_email(mail: &Mail, to: &str, subject: &str) {
    assert_eq!(mail.to, to);
    assert_eq!(mail.subject, subject);
    assert!(
        mail.message_id.ends_with("@usermgmt.test"),
        "{}",
        mail.message_id
    );
    let link = format!(
        "https://console.example/accept-invite?token={}",
        mail.token()
    );
    assert_eq!(mail.token().len(), 43);
    assert!(mail.text.contains(&link), "{}", mail.text);
    // HTML escapes the slashes of the link (`&#x2f;`), which browsers read back as `/`.
    let html_link = link.replace('/', "&#x2f;");
    assert!(
        mail.html.contains(&format!("href=\"{html_link}\"")),
        "{}",
        mail.html
    );
    assert!(mail.text.contains("Alice Admin") && mail.html.contains("Alice Admin"));
    assert!(
        mail.text.contains("2026-11-29 09:00 UTC"),
        "the expiry is named"
    );
}

#[tokio::test]
async fn a_new_user_gets_the_create_password_email_in_their_language_and_its_link_activates_them() {
    let app = spawn_app().await;
    for (n, (language, subject, _)) in LANGUAGES.into_iter().enumerate() {
        let email = format!("new{n}@example.com");
        let user = invite_in(&app, &app.admin_token, app.account_id, &email, language).await;
        let mails = app.mail.wait_for(n + 1).await;
        let mail = &mails[n];
        assert_invitation_email(mail, &email, subject);

        let accepted = app
            .accept(&mail.token(), Some("correct horse battery"))
            .await
            .unwrap();
        assert_eq!(accepted.user_id, user.id);
        assert_eq!(accepted.account_id, app.account_id.to_string());
        let member = get(&app, &user.id).await;
        assert_eq!(member.status(), pb::UserStatus::Active);
        assert!(member.accepted_at.is_some());
        assert!(member.invitation_expires_at.is_none());
        let stored = entity::user::Entity::find()
            .filter(entity::user::Column::Email.eq(email))
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        assert!(stored.activated);
        assert!(stored.password_hash.unwrap().starts_with("$argon2id$"));
    }
    let sent = entity::outbox::Entity::find().all(&app.db).await.unwrap();
    for email in sent {
        assert!(email.sent_at.is_some());
        let message: InvitationEmail = serde_json::from_str(&email.payload).unwrap();
        assert_eq!(message.secret, None, "a sent email keeps no secret");
        assert!(!email.payload.contains("secret"));
    }
}

#[tokio::test]
async fn an_existing_user_gets_the_access_notice_in_their_language_and_accepts_without_a_password()
{
    let app = spawn_app().await;
    let (globex, _, globex_token) = app.other_account("bob@globex.example").await;
    for (n, (language, _, subject)) in LANGUAGES.into_iter().enumerate() {
        let email = format!("known{n}@example.com");
        // They become a user of Globex first, in their language.
        invite_in(&app, &globex_token, globex, &email, language).await;
        let mails = app.mail.wait_for(2 * n + 1).await;
        app.accept(&mails[2 * n].token(), Some("a long password"))
            .await
            .unwrap();

        // Acme's invitation names another language: the email follows the user's own.
        let user = invite_in(
            &app,
            &app.admin_token,
            app.account_id,
            &email,
            pb::Language::En,
        )
        .await;
        let mails = app.mail.wait_for(2 * n + 2).await;
        let mail = &mails[2 * n + 1];
        assert_invitation_email(mail, &email, subject);

        let with_password = app
            .accept(&mail.token(), Some("another password"))
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&with_password), ["password"]);
        let accepted = app.accept(&mail.token(), None).await.unwrap();
        assert_eq!(accepted.user_id, user.id);
        assert_eq!(get(&app, &user.id).await.status(), pb::UserStatus::Active);
    }
}

#[tokio::test]
async fn a_secret_works_once_and_unknown_secrets_read_alike() {
    let app = spawn_app().await;
    app.invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let token = app.mail.wait_for(1).await[0].token();
    app.accept(&token, Some("12345678")).await.unwrap();

    let again = app.accept(&token, Some("12345678")).await.unwrap_err();
    let unknown = app
        .accept("no-such-secret", Some("12345678"))
        .await
        .unwrap_err();
    for status in [&again, &unknown] {
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(reason(status), "INVITATION_NOT_FOUND");
    }
    assert_eq!(again.message(), unknown.message());
}

#[tokio::test]
async fn of_two_concurrent_accepts_of_one_secret_exactly_one_succeeds() {
    let app = spawn_app().await;
    app.invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let token = app.mail.wait_for(1).await[0].token();
    let (first, second) = tokio::join!(
        app.accept(&token, Some("password one")),
        app.accept(&token, Some("password two"))
    );
    let outcomes = [first, second];
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    let loser = outcomes
        .iter()
        .find_map(|outcome| outcome.as_ref().err())
        .unwrap();
    assert_eq!(loser.code(), Code::NotFound);
}

#[tokio::test]
async fn bad_passwords_are_refused_and_consume_nothing() {
    let app = spawn_app().await;
    let user = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let token = app.mail.wait_for(1).await[0].token();
    for password in [None, Some("short"), Some(&*"x".repeat(129))] {
        let status = app.accept(&token, password).await.unwrap_err();
        assert_eq!(bad_fields(&status), ["password"], "{password:?}");
    }
    assert_eq!(get(&app, &user.id).await.status(), pb::UserStatus::Invited);
    app.accept(&token, Some(&"y".repeat(128))).await.unwrap();
    assert_eq!(
        bad_fields(&app.accept("", None).await.unwrap_err()),
        ["token"]
    );
}

#[tokio::test]
async fn an_expired_link_says_so_and_a_resend_brings_a_working_one() {
    let app = spawn_app().await;
    let user = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    let old = app.mail.wait_for(1).await[0].token();

    app.advance(TimeDelta::hours(24));
    assert_eq!(get(&app, &user.id).await.status(), pb::UserStatus::Expired);
    let expired = app.accept(&old, Some("12345678")).await.unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);
    assert_eq!(reason(&expired), "INVITATION_EXPIRED");
    assert!(expired.message().contains("expired") && expired.message().contains("resend"));

    let resent = app.resend(&user.id).await.unwrap();
    assert_eq!(resent.status(), pb::UserStatus::Invited);
    assert_eq!(
        resent.invitation_expires_at.unwrap().seconds,
        (app.clock_now() + TimeDelta::hours(24)).timestamp(),
        "the validity period starts again"
    );
    let mails = app.mail.wait_for(2).await;
    assert_eq!(mails[1].subject, mails[0].subject, "the same kind of email");
    assert_ne!(mails[1].message_id, mails[0].message_id);
    let new = mails[1].token();
    assert_ne!(new, old);
    assert_eq!(
        app.accept(&old, Some("12345678")).await.unwrap_err().code(),
        Code::NotFound
    );
    app.accept(&new, Some("12345678")).await.unwrap();
    assert_eq!(get(&app, &user.id).await.status(), pb::UserStatus::Active);
}

#[tokio::test]
async fn resending_is_for_administrators_pending_invitations_and_at_most_once_a_minute() {
    let app = spawn_app().await;
    let user = app
        .invite("Ada", "ada@example.com", pb::Role::Users)
        .await
        .unwrap();
    app.mail.wait_for(1).await;

    let too_soon = app.resend(&user.id).await.unwrap_err();
    assert_eq!(too_soon.code(), Code::ResourceExhausted);
    assert_eq!(reason(&too_soon), "RESEND_TOO_SOON");
    let retry = too_soon
        .get_details_retry_info()
        .expect("a RetryInfo detail");
    assert_eq!(retry.retry_delay, Some(std::time::Duration::from_secs(60)));

    app.advance(TimeDelta::seconds(59));
    assert_eq!(
        app.resend(&user.id).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    app.advance(TimeDelta::seconds(1));
    app.resend(&user.id).await.unwrap();

    let engineer = app
        .add_member(
            app.account_id,
            "eng@acme.example",
            Role::Engineers,
            Role::Engineers,
        )
        .await;
    let denied = app
        .users
        .clone()
        .resend_invitation(with_token(
            &engineer.token,
            pb::ResendInvitationRequest {
                account_id: app.account_id.to_string(),
                user_id: user.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let active = app.resend(&app.admin_id.to_string()).await.unwrap_err();
    assert_eq!(active.code(), Code::FailedPrecondition);
    assert_eq!(reason(&active), "INVITATION_ALREADY_ACCEPTED");
    let missing = app
        .resend(&uuid::Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        bad_fields(&app.resend("nope").await.unwrap_err()),
        ["user_id"]
    );
}

#[tokio::test]
async fn a_repeated_request_id_answers_the_first_invitation_and_sends_one_email() {
    let app = spawn_app().await;
    let request = || {
        let mut request = invite_request(app.account_id, "Ada", "ada@example.com", pb::Role::Users);
        request.request_id = Some("9b7c5f1e-7d43-4c0e-9a57-1f0c2f1d3a11".into());
        request
    };
    let call = |request: pb::InviteUserRequest| {
        let mut client = app.users.clone();
        let request = with_token(&app.admin_token, request);
        async move {
            client
                .invite_user(request)
                .await
                .map(|r| r.into_inner().user.unwrap())
        }
    };
    let first = call(request()).await.unwrap();
    let again = call(request()).await.unwrap();
    // The email's delivery moves on as the notifier works; the rest is the first answer.
    let as_invited = |user: pb::User| pb::User {
        invitation_delivery: None,
        ..user
    };
    assert_eq!(as_invited(again), as_invited(first));

    let mut different = request();
    different.role = pb::Role::Engineers as i32;
    assert_eq!(
        bad_fields(&call(different).await.unwrap_err()),
        ["request_id"]
    );

    app.wait_deliveries(1, Outcome::Sent).await;
    assert_eq!(
        entity::outbox::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(app.mail.mails().len(), 1);
}
