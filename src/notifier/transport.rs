//! Where emails go: a pooled SMTP client, or `.eml` files in a folder.

use std::{path::Path, time::Duration};

use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    transport::smtp::PoolConfig,
};

pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>),
}

impl Transport {
    /// A pooled SMTP client for the URL (`smtp://`, `smtps://`, `?tls=required`, with
    /// credentials in the URL), with connect and command timeouts.
    pub fn smtp(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("USERMGMT_SMTP_URL is not usable: {e}"))?
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(pool_size))
            .build();
        Ok(Transport::Smtp(transport))
    }

    /// Writes each email as an `.eml` file in the folder, creating it.
    pub fn files(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create mail folder {}: {e}", dir.display()))?;
        Ok(Transport::Files(AsyncFileTransport::new(dir)))
    }

    pub async fn send(&self, message: Message) -> Result<(), String> {
        match self {
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Transport::Files(files) => files
                .send(message)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }
}
