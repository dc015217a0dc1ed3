//! A relay that offers AUTH PLAIN without STARTTLS, as a local relay or sidecar does: just
//! enough SMTP, on a real TCP listener on port 0, to take mail and record who logged in.
//! (The harness's mail server offers AUTH only after STARTTLS.)

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

#[derive(Default)]
struct Seen {
    logins: Vec<String>,
    mails: usize,
}

#[derive(Clone)]
pub struct ClearRelay {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl ClearRelay {
    /// Listens on 127.0.0.1, port 0, until the test's runtime ends.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = ClearRelay {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
        };
        let seen = relay.seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, seen.clone()));
            }
        });
        relay
    }

    /// The user names AUTH was sent with.
    pub fn logins(&self) -> Vec<String> {
        self.seen().logins.clone()
    }

    /// How many emails it took.
    pub fn mails(&self) -> usize {
        self.seen().mails
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn session(stream: TcpStream, seen: Arc<Mutex<Seen>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 clear.test ESMTP\r\n").await?;
    let mut in_data = false;
    while let Some(line) = lines.next_line().await? {
        if in_data {
            if line == "." {
                in_data = false;
                seen.lock().unwrap_or_else(PoisonError::into_inner).mails += 1;
                write.write_all(b"250 2.0.0 queued\r\n").await?;
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-clear.test\r\n250 AUTH PLAIN\r\n",
            "AUTH" => {
                let user = line
                    .split_whitespace()
                    .nth(2)
                    .and_then(|encoded| STANDARD.decode(encoded).ok())
                    .and_then(|plain| {
                        let user = plain.split(|b| *b == 0).nth(1)?.to_vec();
                        String::from_utf8(user).ok()
                    })
                    .unwrap_or_default();
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .logins
                    .push(user);
                b"235 2.7.0 authenticated\r\n"
            }
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
            _ => b"502 not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
    Ok(())
}
