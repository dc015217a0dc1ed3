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
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::relay::{Relay, RelayPool, SendError, tls_parameters};

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

    /// Writes each email as an `.eml` file in the folder, creating it (readable by this
    /// user only: the emails hold live links).
    pub fn files(dir: &Path) -> Result<Self, String> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| format!("cannot create mail folder {}: {e}", dir.display()))?;
        Ok(Transport::Files(dir.to_path_buf()))
    }

    /// Hands the email to the mail server, or writes it (atomically) as `<id>.eml`.
    pub async fn send(&self, id: Uuid, message: Message) -> Result<(), SendError> {
        match self {
            Transport::Smtp(relay) => relay.send(&message).await,
            Transport::Smtps(smtp) => smtp
                .send(message)
                .await
                .map(drop)
                .map_err(SendError::from_implicit_tls),
            Transport::Files(dir) => {
                let partial = dir.join(format!(".{id}.eml.partial"));
                write_private(&partial, &message.formatted())
                    .await
                    .map_err(|e| {
                        SendError::transient(format!("cannot write {}: {e}", partial.display()))
                    })?;
                tokio::fs::rename(&partial, dir.join(format!("{id}.eml")))
                    .await
                    .map_err(|e| SendError::transient(format!("cannot write {id}.eml: {e}")))
            }
        }
    }
}

/// Writes a new file that only this user may read (0600 on unix), whatever the umask. A
/// file left by an interrupted attempt is replaced, not reused with its old mode.
async fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).await?;
    file.write_all(contents).await?;
    file.flush().await
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

    #[cfg(unix)]
    #[tokio::test]
    async fn eml_files_and_the_folder_made_for_them_are_private_to_the_service() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("mail");
        let transport = Transport::files(&folder).unwrap();
        let id = Uuid::now_v7();
        let message = Message::builder()
            .from("a@example.com".parse().unwrap())
            .to("b@example.com".parse().unwrap())
            .subject("Your link")
            .body("https://console.example/accept?token=live".to_string())
            .unwrap();
        // A file left by an interrupted attempt, readable by all, is not reused.
        let partial = folder.join(format!(".{id}.eml.partial"));
        std::fs::write(&partial, "half").unwrap();
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).unwrap();

        transport.send(id, message).await.unwrap();

        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder.join(format!("{id}.eml"))), 0o600);
        assert_eq!(mode(&folder), 0o700);
        assert!(!partial.exists());
    }
}
