//! AUTH only over TLS, or to a relay on this machine. Which URLs and connections may carry
//! credentials is decided by table in `src/notifier/relay.rs`; here the decisions meet
//! real relays.

use std::time::Duration;

use lettre::Message;
use usermgmt::{app::Application, config::Settings, notifier::Transport};
use uuid::Uuid;

use super::clear_relay::ClearRelay;
use crate::helpers::fresh_database;

const USER: &str = "notifier";
const PASSWORD: &str = "relay-password";

fn message() -> Message {
    Message::builder()
        .from("no-reply@usermgmt.test".parse().unwrap())
        .to("ada@example.com".parse().unwrap())
        .subject("hello")
        .body("hello".to_string())
        .unwrap()
}

fn transport(url: &str) -> Transport {
    Transport::smtp(url, 1, Duration::from_secs(5), None).expect("the URL is usable")
}

#[tokio::test]
async fn a_relay_on_this_machine_gets_credentials_without_starttls() {
    let relay = ClearRelay::start().await;
    let port = relay.addr.port();
    for url in [
        format!("smtp://{USER}:{PASSWORD}@127.0.0.1:{port}?tls=opportunistic"),
        format!("smtp://{USER}:{PASSWORD}@localhost:{port}"),
    ] {
        transport(&url)
            .send(Uuid::now_v7(), message())
            .await
            .unwrap_or_else(|error| panic!("{url}: {error}"));
    }
    assert_eq!(relay.logins(), [USER, USER]);
    assert_eq!(relay.mails(), 2);
}

/// 0.0.0.0 is not a loopback address, so the URL names another machine; Linux connects it
/// to this one, which lets a test play a remote relay that offers no STARTTLS.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_opportunistic_relay_elsewhere_without_starttls_never_sees_the_credentials() {
    let relay = ClearRelay::start().await;
    let url = format!(
        "smtp://{USER}:{PASSWORD}@0.0.0.0:{}?tls=opportunistic",
        relay.addr.port()
    );

    let error = transport(&url)
        .send(Uuid::now_v7(), message())
        .await
        .expect_err("no AUTH in clear to another machine");

    assert!(error.message.contains("did not offer STARTTLS"), "{error}");
    assert!(!error.message.contains(PASSWORD), "{error}");
    assert!(relay.logins().is_empty(), "no credentials were sent");
    assert_eq!(relay.mails(), 0);
}

#[tokio::test]
async fn a_url_sending_credentials_in_clear_to_another_machine_stops_the_start() {
    let database = fresh_database().await;
    let mut settings = Settings::for_database(database.url());
    settings.mail.smtp_url = Some(format!("smtp://{USER}:{PASSWORD}@mail.example.com:25").into());

    let Err(error) = Application::build(&settings).await else {
        panic!("the application started");
    };

    let error = error.to_string();
    assert!(error.contains("USERMGMT_SMTP_URL"), "{error}");
    assert!(error.contains("no TLS"), "{error}");
    assert!(!error.contains(PASSWORD), "{error}");
}
