//! Load beyond one call at a time: GetUser through h2load, InviteUser from 32 tasks, and
//! 1,000 GetUser calls held open while the server's memory is read.

use std::{
    collections::BTreeMap,
    io::Write,
    net::SocketAddr,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use prost::Message;
use tonic::transport::Channel;
use uuid::Uuid;

use usermgmt::grpc::pb::{self, user_management_client::UserManagementClient};

use crate::{list::Client, server::Server, stats::Figure};

const GET_USER: &str = "/usermgmt.v1.UserManagement/GetUser";

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect to the server")
}

/// A gRPC request body: uncompressed, its length, the message.
fn grpc_frame(message: &impl Message) -> Vec<u8> {
    let encoded = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(encoded.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&encoded);
    frame
}

/// GetUser of one member, `connections` × `streams` by h2load for `seconds`. One call
/// through tonic first shows that the call succeeds (h2load
/// cannot tell gRPC codes apart).
pub async fn get_user_h2load(
    addr: SocketAddr,
    token: &str,
    request: pb::GetUserRequest,
    (connections, streams): (usize, usize),
    seconds: u64,
) -> (Figure, String) {
    UserManagementClient::new(channel(addr).await)
        .get_user(Client::authorized(token, request.clone()))
        .await
        .expect("GetUser succeeds");
    let mut body = tempfile::NamedTempFile::new().expect("a temporary file");
    body.write_all(&grpc_frame(&request))
        .expect("write the body");
    let output = Command::new(std::env::var("H2LOAD").unwrap_or("h2load".into()))
        .args(["-c", &connections.to_string(), "-m", &streams.to_string()])
        .args(["-D", &seconds.to_string()])
        .arg("-d")
        .arg(body.path())
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["-H", &format!("authorization: APIKey {token}")])
        .arg(format!("http://{addr}{GET_USER}"))
        .output()
        .expect("h2load runs (H2LOAD names it)");
    let report = String::from_utf8_lossy(&output.stdout);
    let rate = report
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("finished in")?;
            let rate = rest.split(',').nth(1)?;
            rate.trim()
                .strip_suffix("req/s")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "h2load printed no rate:\n{report}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let requests = report
        .lines()
        .find(|line| line.starts_with("requests:"))
        .unwrap_or("")
        .to_string();
    (Figure::Rate(rate), requests)
}

/// `tasks` tasks invite distinct emails for `duration`, task `t` with token `t % n`.
/// Returns invitations per second and the outcome counts.
pub async fn invite_users(
    addr: SocketAddr,
    account_id: Uuid,
    tokens: &[String],
    tasks: usize,
    duration: Duration,
) -> (Figure, BTreeMap<String, u64>) {
    let run = chrono::Utc::now().timestamp_millis();
    let channel = channel(addr).await;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let mut users = UserManagementClient::new(channel.clone());
        let token = tokens[t % tokens.len()].clone();
        handles.push(tokio::spawn(async move {
            let mut outcomes = BTreeMap::<String, u64>::new();
            let mut k = 0u64;
            while started.elapsed() < duration {
                k += 1;
                let request = pb::InviteUserRequest {
                    account_id: account_id.to_string(),
                    name: format!("Invitee {run} {t} {k}"),
                    email: format!("invitee-{run}-{t}-{k}@example.com"),
                    language: pb::Language::En as i32,
                    role: pb::Role::Users as i32,
                    ..Default::default()
                };
                let code = match users.invite_user(Client::authorized(&token, request)).await {
                    Ok(_) => "OK".to_string(),
                    Err(status) => format!("{:?}", status.code()),
                };
                *outcomes.entry(code).or_default() += 1;
            }
            outcomes
        }));
    }
    let mut outcomes = BTreeMap::<String, u64>::new();
    for handle in handles {
        for (code, n) in handle.await.expect("an invitation task") {
            *outcomes.entry(code).or_default() += n;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = outcomes.get("OK").copied().unwrap_or(0) as f64;
    (Figure::Rate(ok / elapsed), outcomes)
}

/// `connections` × `streams` GetUser calls held in flight (each task calls again as soon
/// as its call ends) for `duration`; the server's RSS is read every 50 ms. Returns the
/// highest RSS seen, the peak the kernel kept, and the outcome counts.
pub async fn rss_under_streams(
    server: &Server,
    tokens: &[String],
    request: pb::GetUserRequest,
    (connections, streams): (usize, usize),
    duration: Duration,
) -> (Figure, BTreeMap<String, u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for c in 0..connections {
        let channel = channel(server.addr).await;
        for s in 0..streams {
            let mut users = UserManagementClient::new(channel.clone());
            let token = tokens[(c * streams + s) % tokens.len()].clone();
            let request = request.clone();
            let stop = stop.clone();
            handles.push(tokio::spawn(async move {
                let mut outcomes = BTreeMap::<String, u64>::new();
                while !stop.load(Ordering::Relaxed) {
                    let call = users.get_user(Client::authorized(&token, request.clone()));
                    let code = match call.await {
                        Ok(_) => "OK".to_string(),
                        Err(status) => format!("{:?}", status.code()),
                    };
                    *outcomes.entry(code).or_default() += 1;
                }
                outcomes
            }));
        }
    }
    let started = Instant::now();
    let mut highest = 0.0f64;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(50)).await;
        highest = highest.max(server.memory().0);
    }
    let (_, peak) = server.memory();
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = BTreeMap::<String, u64>::new();
    for handle in handles {
        for (code, n) in handle.await.expect("a stream task") {
            *outcomes.entry(code).or_default() += n;
        }
    }
    (Figure::Memory { rss: highest, peak }, outcomes)
}
