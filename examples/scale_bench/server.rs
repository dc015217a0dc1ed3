//! The service as its own process: the release binary, so that its memory can be read
//! from `/proc/<pid>/status`.

use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
}

/// The binary with the benchmark's settings: the database, port 0, JSON logs, no
/// notifier, no invitation quota. Other `USERMGMT_*` variables of this process pass through (and are printed).
fn command(binary: &Path, database_url: &str, subcommand: &str) -> Command {
    let mut command = Command::new(binary);
    command
        .arg(subcommand)
        .env("USERMGMT_DATABASE_URL", database_url)
        .env("USERMGMT_LISTEN_ADDR", "127.0.0.1:0")
        .env("USERMGMT_LOG_FORMAT", "json")
        .env("USERMGMT_NOTIFIER", "false")
        .env("USERMGMT_MAIL_DIR", "/tmp/bench-scale-mail")
        // Thousands of invitations in seconds: the quota (500 a day by default) would
        // refuse them. Set it to measure with one.
        .env(
            "USERMGMT_INVITE_QUOTA",
            std::env::var("USERMGMT_INVITE_QUOTA").unwrap_or("0".into()),
        )
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("info".into()),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The `USERMGMT_*` settings this process passes on, for the report.
pub fn passed_settings() -> Vec<String> {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("USERMGMT_") && !name.contains("URL"))
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

/// `usermgmt migrate`: the schema, before the seeding writes to it.
pub async fn migrate(binary: &Path, database_url: &str) {
    let status = command(binary, database_url, "migrate")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap_or_else(|e| panic!("{} runs: {e}", binary.display()));
    assert!(status.success(), "usermgmt migrate failed: {status}");
}

/// `usermgmt serve`, and the address it logs once it listens.
pub async fn start(binary: &Path, database_url: &str) -> Server {
    let mut child = command(binary, database_url, "serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
    let pid = child.id().expect("the server runs");
    let stderr = child.stderr.take().expect("a piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if entry["fields"]["message"] == "gRPC server listening"
                && let Some(addr) = entry["fields"]["addr"].as_str()
            {
                return addr.parse::<SocketAddr>().expect("an address");
            }
        }
        panic!("the server ended before it listened");
    })
    .await
    .expect("the server listens within 2 minutes");
    // Keep reading the log, so that the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server { child, addr, pid }
}

impl Server {
    /// `VmRSS` and `VmHWM` (peak) in MiB.
    pub fn memory(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<f64>().ok())
                .map_or(f64::NAN, |kib| kib / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The CPU time the server has used so far (user and system, all threads), in seconds:
    /// `utime` and `stime` of `/proc/<pid>/stat`, in Linux's fixed 100 ticks a second.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}
