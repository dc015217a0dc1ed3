//! Load for the database-outage drill (docs/operations.md): a few clients call ListUsers in
//! a loop against a running server while a health `Watch` stream listens, for a fixed time;
//! then it prints, per second, the calls' gRPC codes, and every health change, with times
//! relative to the start.
//!
//! ```text
//! cargo run --example outage_drill -- ADDR ACCOUNT_ID API_TOKEN [SECONDS] [CLIENTS]
//! ```

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use usermgmt::grpc::pb::{ListUsersRequest, user_management_client::UserManagementClient};

type Tally = Arc<Mutex<BTreeMap<u64, BTreeMap<String, u32>>>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, account_id, token, rest @ ..] = args.as_slice() else {
        return Err("usage: outage_drill ADDR ACCOUNT_ID API_TOKEN [SECONDS] [CLIENTS]".into());
    };
    let seconds: u64 = rest.first().map_or(Ok(30), |s| s.parse())?;
    let clients: usize = rest.get(1).map_or(Ok(4), |s| s.parse())?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);

    let health = {
        let mut client = HealthClient::new(channel.clone());
        tokio::spawn(async move {
            let mut changes = Vec::new();
            let Ok(response) = client
                .watch(HealthCheckRequest {
                    service: String::new(),
                })
                .await
            else {
                return changes;
            };
            let mut stream = response.into_inner();
            while let Ok(Ok(Some(message))) =
                tokio::time::timeout_at(until.into(), stream.message()).await
            {
                changes.push((start.elapsed(), message.status()));
            }
            changes
        })
    };

    let tally: Tally = Arc::default();
    let mut loops = Vec::new();
    for _ in 0..clients {
        let mut users = UserManagementClient::new(channel.clone());
        let (account_id, token, tally) = (account_id.clone(), token.clone(), tally.clone());
        loops.push(tokio::spawn(async move {
            while Instant::now() < until {
                let mut request = Request::new(ListUsersRequest {
                    account_id: account_id.clone(),
                    page_size: 1,
                    ..Default::default()
                });
                request.set_timeout(Duration::from_secs(10));
                request
                    .metadata_mut()
                    .insert("authorization", format!("APIKey {token}").parse().unwrap());
                let code = match users.list_users(request).await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                };
                let second = start.elapsed().as_secs();
                *tally
                    .lock()
                    .unwrap()
                    .entry(second)
                    .or_default()
                    .entry(format!("{code:?}"))
                    .or_default() += 1;
                if code != Code::Ok {
                    // An outage answers at once: no need to hammer it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for handle in loops {
        handle.await?;
    }
    for (second, codes) in tally.lock().unwrap().iter() {
        println!("t={second:>3}s {codes:?}");
    }
    for (at, status) in health.await? {
        println!("health at {:.2}s: {status:?}", at.as_secs_f64());
    }
    Ok(())
}
