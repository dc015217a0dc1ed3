use std::process::ExitCode;

use clap::Parser;
use serde_json::json;
use usermgmt::{
    app::{self, Application},
    config::{Cli, Command, Settings},
    domain::{DisplayName, Email, Role},
    grpc::pb,
    service::NewAccount,
    telemetry,
};

/// Many small allocations per call (headers, statements, rows): mimalloc serves them with
/// less work than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match telemetry::init_with_traces(
        cli.settings.server.log_format,
        &cli.settings.observability,
    ) {
        Ok(telemetry) => telemetry,
        Err(message) => {
            telemetry::init(cli.settings.server.log_format);
            tracing::error!(error = %message, "usermgmt failed");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.settings).await,
        Command::Migrate => migrate(&cli.settings).await,
        Command::Bootstrap {
            account_name,
            admin_email,
            admin_name,
        } => {
            bootstrap(
                &cli.settings,
                &account_name,
                &admin_email,
                admin_name.as_deref(),
            )
            .await
        }
        Command::Healthcheck => healthcheck(&cli.settings).await,
        Command::IssueToken {
            account_id,
            email,
            role,
            name,
        } => issue_token(&cli.settings, account_id, &email, role.as_deref(), &name).await,
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "usermgmt failed");
            ExitCode::FAILURE
        }
    };
    // The last spans reach the collector and the last lines stderr before the process ends.
    telemetry.shutdown().await;
    code
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

async fn serve(settings: &Settings) -> CliResult {
    let app = Application::build(settings).await?;
    let first = NewAccount::parse("Default account", "admin@example.com", None)?;
    if let Some(created) = app.users().create_first_account(&first).await? {
        println!(
            "Created account {} with administrator admin@example.com ({}).\n\
             Its API token, shown only this once:\n\n    {}\n\n\
             Call with: grpcurl -plaintext -H 'authorization: APIKey <token>' {} list",
            created.account_id,
            created.user_id,
            created.api_token.expose(),
            app.local_addr()
        );
    }
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

async fn migrate(settings: &Settings) -> CliResult {
    app::service(settings).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn bootstrap(
    settings: &Settings,
    account_name: &str,
    admin_email: &str,
    admin_name: Option<&str>,
) -> CliResult {
    let new = NewAccount::parse(account_name, admin_email, admin_name)?;
    let created = app::service(settings).await?.create_account(&new).await?;
    println!(
        "{}",
        json!({
            "account_id": created.account_id,
            "user_id": created.user_id,
            "api_token": created.api_token.expose(),
        })
    );
    Ok(())
}

async fn issue_token(
    settings: &Settings,
    account_id: uuid::Uuid,
    email: &str,
    role: Option<&str>,
    name: &str,
) -> CliResult {
    let email = Email::parse(email).map_err(|e| format!("--email {e}"))?;
    let name = DisplayName::parse(name).map_err(|e| format!("--name {e}"))?;
    let role = role
        .map(|name| parse_role(name).ok_or(format!("--role {name:?} is not a role")))
        .transpose()?;
    let issued = app::service(settings)
        .await?
        .issue_token_for(account_id, &email, role, name)
        .await?;
    println!(
        "{}",
        json!({
            "token_id": issued.token.id,
            "user_id": issued.token.issuer_id,
            "role": role_name(issued.token.role),
            "api_token": issued.secret.expose(),
        })
    );
    Ok(())
}

/// A role as the API spells it (`ROLE_ENGINEERS`); the command line's older kebab-case
/// spelling (`engineers`) is still taken.
fn parse_role(name: &str) -> Option<Role> {
    pb::Role::from_str_name(name)
        .and_then(|role| Role::from_id(role as i32))
        .or_else(|| Role::from_slug(name))
}

/// The role's name in the API (`ROLE_ENGINEERS`), as the command line prints it.
fn role_name(role: Role) -> &'static str {
    pb::Role::try_from(role.id()).map_or("ROLE_UNSPECIFIED", |role| role.as_str_name())
}

/// Asks the local server's health service; succeeds when it answers SERVING.
async fn healthcheck(settings: &Settings) -> CliResult {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let mut addr = settings.server.listen_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(3))
        .connect()
        .await?;
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    if response.status() == ServingStatus::Serving {
        Ok(())
    } else {
        Err(format!("server at {addr} is {:?}", response.status()).into())
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
