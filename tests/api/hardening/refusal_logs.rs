//! AcceptInvitation needs no credential, so anyone can send it wrong secrets: each refusal
//! is an INFO line, never an ERROR line, and no line holds the secret or its hash.

use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
};

use chrono::TimeDelta;
use tonic::Code;
use tracing::Level;
use usermgmt::{domain::SecretHash, grpc::pb};

use crate::helpers::spawn_app;

/// Everything logged while it is the default subscriber of the test's thread, as text.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// `#[tokio::test]` runs on one thread, so the server's tasks log into the capture too.
#[tokio::test]
async fn wrong_and_expired_invitation_secrets_are_info_lines_without_the_secret() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let app = spawn_app().await;
    app.invite("Ada Lovelace", "ada@example.com", pb::Role::Engineers)
        .await
        .unwrap();
    let secret = app.mail.wait_for(1).await[0].token();
    let wrong = "wrongWRONGwrongWRONGwrongWRONGwrongWRONGwro";

    let unknown = app
        .accept(wrong, Some("a long password"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let short_password = app.accept(&secret, Some("short")).await.unwrap_err();
    assert_eq!(short_password.code(), Code::InvalidArgument);
    app.advance(TimeDelta::days(2));
    let expired = app
        .accept(&secret, Some("a long password"))
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);

    let text = logs.text();
    let refusals: Vec<_> = text
        .lines()
        .filter(|line| line.contains("accept"))
        .filter(|line| line.contains("not valid") || line.contains("expired"))
        .collect();
    assert_eq!(refusals.len(), 2, "both refusals are logged:\n{text}");
    assert!(
        refusals.iter().all(|line| line.contains(" INFO ")),
        "{text}"
    );
    assert!(text.contains("password must be at least"), "{text}");
    for line in text.lines() {
        assert!(!line.contains("ERROR"), "an ERROR line: {line}");
    }
    for secret in [wrong, secret.as_str()] {
        assert!(!text.contains(secret), "a secret in the logs:\n{text}");
        let hash = SecretHash::of(secret);
        assert!(!text.contains(hash.as_str()), "a hash in the logs:\n{text}");
    }
}
