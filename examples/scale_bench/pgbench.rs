//! pgbench runs: latencies of one statement, throughput of a script.

use std::{path::Path, process::Command, time::Duration};

use crate::stats::Stats;

/// Untimed transactions before the timed ones of a latency run.
const WARMUP: usize = 20;

fn pgbench() -> Command {
    let mut command = Command::new(std::env::var("PGBENCH").unwrap_or("pgbench".into()));
    command.arg("-n");
    command
}

fn run(mut command: Command) -> String {
    let output = command.output().expect("pgbench runs (PGBENCH names it)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "pgbench failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The script, one client, one transaction after the other; the latencies from pgbench's
/// per-transaction log.
pub fn latencies(database_url: &str, script: &Path, iterations: usize) -> Stats {
    let prefix = script.with_extension("log");
    let mut command = pgbench();
    command
        .args([
            "-c",
            "1",
            "-j",
            "1",
            "-t",
            &(WARMUP + iterations).to_string(),
        ])
        .arg("-f")
        .arg(script)
        .arg("-l")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg(database_url);
    run(command);
    let dir = prefix.parent().expect("a folder");
    let stem = prefix
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    let mut samples = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the folder").flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&stem) {
            continue;
        }
        let log = std::fs::read_to_string(entry.path()).expect("read the pgbench log");
        std::fs::remove_file(entry.path()).ok();
        // client_id transaction_no time_us script_no epoch epoch_us
        samples.extend(log.lines().skip(WARMUP).filter_map(|line| {
            let micros = line.split_whitespace().nth(2)?.parse::<u64>().ok()?;
            Some(Duration::from_micros(micros))
        }));
    }
    Stats::of(samples)
}

/// Transactions per second of the script at `clients` clients on `threads` threads for
/// `seconds`, with `defines` as pgbench variables.
pub fn throughput(
    database_url: &str,
    script: &Path,
    clients: usize,
    threads: usize,
    seconds: u64,
    defines: &[(&str, String)],
) -> f64 {
    let mut command = pgbench();
    command
        .args(["-M", "prepared"])
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &seconds.to_string()]);
    for (name, value) in defines {
        command.args(["-D", &format!("{name}={value}")]);
    }
    command.arg("-f").arg(script).arg(database_url);
    let stdout = run(command);
    let failed = stdout
        .lines()
        .find(|line| line.starts_with("number of failed transactions"))
        .unwrap_or("");
    if !failed.starts_with("number of failed transactions: 0") && !failed.is_empty() {
        eprintln!("pgbench: {failed}");
    }
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .expect("pgbench prints tps")
}
