//! Where emails go: pooled SMTP connections, or `.eml` files in a folder.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    transport::smtp::{
        PoolConfig,
        client::{Certificate, Tls},
    },
};
use uuid::Uuid;

use super::relay::{Relay, RelayPool, tls_parameters};

pub enum Transport {
    /// An `smtp://` relay, on connections opened with `TCP_NODELAY`.
    Smtp(RelayPool),
    /// An `smtps://` relay (TLS from the first byte), on lettre's own pooled transport.
    Smtps(AsyncSmtpTransport<Tokio1Executor>),
    /// A folder of `<outbox id>.eml` files: a retried email replaces its own file.
    Files(PathBuf),
}

impl Transport {
    /// A pooled SMTP client for the URL (`smtp://`, `smtps://`, `?tls=required`, with
    /// credentials in the URL), with connect and command timeouts. `ca_file` holds root
    /// certificates (PEM) trusted for the server's TLS besides the public ones.
    pub fn smtp(
        url: &str,
        pool_size: u32,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        let unusable = |e: String| format!("USERMGMT_SMTP_URL is not usable: {e}");
        let roots = ca_file.map(read_roots).transpose()?;
        if let Some(relay) = Relay::from_url(url, timeout, roots.as_ref()).map_err(unusable)? {
            return Ok(Transport::Smtp(RelayPool::new(relay, pool_size)?));
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| unusable(e.to_string()))?
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(pool_size));
        if let Some(roots) = roots {
            let host = url::Url::parse(url)
                .ok()
                .and_then(|url| url.host_str().map(str::to_string))
                .ok_or_else(|| unusable("the URL names no host".into()))?;
            let parameters = tls_parameters(host, Some(&roots)).map_err(unusable)?;
            builder = builder.tls(Tls::Wrapper(parameters));
        }
        Ok(Transport::Smtps(builder.build()))
    }

    /// Writes each email as an `.eml` file in the folder, creating it.
    pub fn files(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create mail folder {}: {e}", dir.display()))?;
        Ok(Transport::Files(dir.to_path_buf()))
    }

    /// Hands the email to the mail server, or writes it (atomically) as `<id>.eml`.
    pub async fn send(&self, id: Uuid, message: Message) -> Result<(), String> {
        match self {
            Transport::Smtp(relay) => relay.send(&message).await,
            Transport::Smtps(smtp) => smtp
                .send(message)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Transport::Files(dir) => {
                let partial = dir.join(format!(".{id}.eml.partial"));
                tokio::fs::write(&partial, message.formatted())
                    .await
                    .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
                tokio::fs::rename(&partial, dir.join(format!("{id}.eml")))
                    .await
                    .map_err(|e| format!("cannot write {id}.eml: {e}"))
            }
        }
    }
}

/// The root certificates of a PEM file.
fn read_roots(path: &Path) -> Result<Certificate, String> {
    let unreadable = |e: String| format!("USERMGMT_SMTP_CA_FILE {}: {e}", path.display());
    let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    Certificate::from_pem(&pem).map_err(|e| unreadable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_smtp_an_email_is_one_eml_file_named_after_its_outbox_row() {
        let dir = tempfile::tempdir().unwrap();
        let transport = Transport::files(&dir.path().join("mail")).unwrap();
        let id = Uuid::now_v7();
        let message = || {
            Message::builder()
                .from("a@example.com".parse().unwrap())
                .to("b@example.com".parse().unwrap())
                .subject("Hello")
                .body("Hi".to_string())
                .unwrap()
        };
        transport.send(id, message()).await.unwrap();
        transport.send(id, message()).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("mail"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, [format!("{id}.eml")]);
    }
}
