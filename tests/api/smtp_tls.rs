//! A relay that requires STARTTLS, with a certificate from a private authority, and AUTH:
//! the notifier trusts the authority named by `USERMGMT_SMTP_CA_FILE`, logs in with the
//! URL's credentials, and delivers; without the authority, or with a wrong password,
//! nothing is handed over.

use std::time::Duration;

use lettre::Message;
use usermgmt::{grpc::pb, notifier::Transport};
use uuid::Uuid;

use crate::helpers::smtp::MailServer;
use crate::helpers::{invite_request, spawn_app_sending_to, with_token};

const USER: &str = "notifier";
const PASSWORD: &str = "relay-password";

#[tokio::test]
async fn invitations_reach_a_relay_over_starttls_and_auth_with_a_private_authority() {
    let certs = tempfile::tempdir().unwrap();
    let mail = MailServer::start_tls(certs.path(), USER, PASSWORD);
    let mut app = spawn_app_sending_to(mail, true).await;

    let request = invite_request(
        app.account_id,
        "Ada Lovelace",
        "ada@example.com",
        pb::Role::Engineers,
    );
    app.users
        .invite_user(with_token(&app.admin_token, request))
        .await
        .expect("invited");

    let mails = app.mail.wait_for(1).await;
    assert_eq!(mails[0].to, "ada@example.com");
    assert!(!mails[0].token().is_empty(), "the email carries its link");
    // mailin offers AUTH only after STARTTLS: a login means the session was encrypted.
    assert_eq!(app.mail.logins(), [USER]);
}

fn message() -> Message {
    Message::builder()
        .from("no-reply@usermgmt.test".parse().unwrap())
        .to("ada@example.com".parse().unwrap())
        .subject("hello")
        .body("hello".to_string())
        .unwrap()
}

#[tokio::test]
async fn a_relay_certificate_from_an_untrusted_authority_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let mail = MailServer::start_tls(certs.path(), USER, PASSWORD);
    let transport = Transport::smtp(&mail.url(), 1, Duration::from_secs(5), None).unwrap();

    let error = transport
        .send(Uuid::now_v7(), message())
        .await
        .expect_err("an unknown authority is not trusted");

    assert!(
        error.message.to_lowercase().contains("certificate"),
        "{error}"
    );
    assert!(
        !error.permanent,
        "a relay's certificate says nothing about the email"
    );
    assert!(mail.logins().is_empty(), "no credentials were sent");
    assert!(mail.mails().is_empty());
}

#[tokio::test]
async fn a_wrong_relay_password_sends_nothing() {
    let certs = tempfile::tempdir().unwrap();
    let mail = MailServer::start_tls(certs.path(), USER, PASSWORD);
    let url = mail.url().replace(PASSWORD, "wrong-password");
    let transport =
        Transport::smtp(&url, 1, Duration::from_secs(5), mail.ca_file.as_deref()).unwrap();

    let error = transport
        .send(Uuid::now_v7(), message())
        .await
        .expect_err("the relay refuses the login");

    assert!(
        error.message.contains("535") || error.message.to_lowercase().contains("credentials"),
        "{error}"
    );
    assert!(
        !error.permanent,
        "a refused login is retried, not the email failed"
    );
    assert_eq!(mail.logins(), [USER]);
    assert!(mail.mails().is_empty());
}
