use std::process::ExitCode;

use clap::Parser;
use secrecy::ExposeSecret;
use serde_json::json;
use usermgmt::{
    app::{AppError, Application},
    clock::{Clock, SystemClock},
    config::{Cli, Command, Settings},
    domain::{DisplayName, Email},
    store, telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.settings.server.log_format);
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
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "usermgmt failed");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

async fn serve(settings: &Settings) -> CliResult {
    let app = Application::build(settings).await?;
    let (email, name) = administrator("admin@example.com", None)?;
    let first = store::accounts::create_first_with_admin(
        app.db(),
        "Default account",
        &email,
        &name,
        SystemClock.now(),
    )
    .await?;
    if let Some(created) = first {
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
    let db = store::connect(settings.database.url.expose_secret()).await?;
    store::migrate(&db).await.map_err(AppError::from)?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn bootstrap(
    settings: &Settings,
    account_name: &str,
    admin_email: &str,
    admin_name: Option<&str>,
) -> CliResult {
    let db = store::connect(settings.database.url.expose_secret()).await?;
    store::migrate(&db).await?;
    let created = create_account(&db, account_name, admin_email, admin_name).await?;
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

async fn create_account(
    db: &sea_orm::DatabaseConnection,
    account_name: &str,
    admin_email: &str,
    admin_name: Option<&str>,
) -> Result<store::accounts::Bootstrapped, Box<dyn std::error::Error>> {
    let account_name =
        DisplayName::parse(account_name).map_err(|e| format!("--account-name {e}"))?;
    let (email, name) = administrator(admin_email, admin_name)?;
    Ok(store::accounts::create_with_admin(
        db,
        account_name.as_str(),
        &email,
        &name,
        SystemClock.now(),
    )
    .await?)
}

/// The first administrator's email, and their name (the email's local part by default).
fn administrator(
    admin_email: &str,
    admin_name: Option<&str>,
) -> Result<(Email, DisplayName), Box<dyn std::error::Error>> {
    let email = Email::parse(admin_email).map_err(|e| format!("--admin-email {e}"))?;
    let local_part = email
        .as_str()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string();
    let name = DisplayName::parse(admin_name.unwrap_or(&local_part))
        .map_err(|e| format!("--admin-name {e}"))?;
    Ok((email, name))
}

async fn issue_token(
    settings: &Settings,
    account_id: uuid::Uuid,
    email: &str,
    role: Option<&str>,
    name: &str,
) -> CliResult {
    use usermgmt::{
        domain::{ApiTokenSecret, Role},
        store::{Actor, tokens::NewToken},
    };
    let db = store::connect(settings.database.url.expose_secret()).await?;
    store::migrate(&db).await?;
    let email = Email::parse(email).map_err(|e| format!("--email {e}"))?;
    let name = DisplayName::parse(name).map_err(|e| format!("--name {e}"))?;
    let user = store::members::find_user_by_email(&db, &email)
        .await?
        .ok_or("no user has this email")?;
    let membership = store::members::find_active_membership(&db, account_id, user.id)
        .await?
        .ok_or("the user is not an active member of this account")?;
    let member_role =
        Role::from_id(membership.role).ok_or("the member's stored role is not valid")?;
    let role = match role {
        None => member_role,
        Some(slug) => Role::from_slug(slug).ok_or(format!("--role {slug:?} is not a role"))?,
    };
    if role > member_role {
        return Err(format!(
            "--role may not be higher than the member's ({})",
            member_role.slug()
        )
        .into());
    }
    let secret = ApiTokenSecret::generate();
    let actor = Actor {
        user_id: user.id,
        request_id: "cli:issue-token",
        now: SystemClock.now(),
    };
    let new = NewToken {
        account_id,
        name: name.as_str(),
        description: "",
        role,
        expires_at: None,
        secret: &secret,
    };
    let token = store::tokens::create(&db, &new, &actor).await?;
    println!(
        "{}",
        json!({ "token_id": token.id, "user_id": user.id, "role": role.slug(), "api_token": secret.expose() })
    );
    Ok(())
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
