//! The whole authorization policy in one table: every RPC against every kind of caller.

use chrono::TimeDelta;
use tonic::{Code, Request, Status};
use usermgmt::{domain::Role, grpc::pb};

use crate::helpers::{TestApp, invite_request, jwt, spawn_app, with_bearer, with_token};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Admin,
    Engineer,
    PlainUser,
    /// An administrator's token issued with the Engineers role.
    LowerRoleToken,
    OtherAccountAdmin,
    /// A JWT of a user removed from the account.
    DeletedMember,
    NoCredential,
    ForgedApiKey,
    ExpiredJwt,
    WronglySignedJwt,
    /// An administrator's token with the Administrators role, expiring in an hour: it may
    /// not mint tokens that outlive it.
    ExpiringToken,
}

const CALLERS: [Caller; 11] = [
    Caller::Admin,
    Caller::Engineer,
    Caller::PlainUser,
    Caller::LowerRoleToken,
    Caller::OtherAccountAdmin,
    Caller::DeletedMember,
    Caller::NoCredential,
    Caller::ForgedApiKey,
    Caller::ExpiredJwt,
    Caller::WronglySignedJwt,
    Caller::ExpiringToken,
];

#[derive(Clone, Copy, Debug)]
enum Rpc {
    InviteUser,
    BatchInviteUsers,
    ResendInvitation,
    AcceptInvitation,
    GetUser,
    ListUsers,
    UpdateUser,
    DeleteUser,
    ListAuditEvents,
    WatchChanges,
    CreateApiToken,
    /// A token with the Users role expiring in 30 minutes.
    CreateExpiringApiToken,
    ListApiTokens,
    DeleteApiToken,
    /// A token of the Administrators role, issued by the administrator.
    DeleteAdministratorsToken,
}

use Code::{NotFound as NF, Ok as OK, PermissionDenied as PD, Unauthenticated as UA};

/// Expected codes, one column per caller in the order of `CALLERS`:
/// Admin, Engineer, PlainUser, LowerRoleToken, OtherAccountAdmin, DeletedMember,
/// NoCredential, ForgedApiKey, ExpiredJwt, WronglySignedJwt, ExpiringToken.
const POLICY: [(Rpc, [Code; 11]); 15] = [
    (
        Rpc::InviteUser,
        [OK, PD, PD, PD, NF, NF, UA, UA, UA, UA, OK],
    ),
    (
        Rpc::BatchInviteUsers,
        [OK, PD, PD, PD, NF, NF, UA, UA, UA, UA, OK],
    ),
    (
        Rpc::ResendInvitation,
        [OK, PD, PD, PD, NF, NF, UA, UA, UA, UA, OK],
    ),
    // The secret is the credential: an unknown one is NOT_FOUND whoever asks.
    (
        Rpc::AcceptInvitation,
        [NF, NF, NF, NF, NF, NF, NF, NF, NF, NF, NF],
    ),
    (Rpc::GetUser, [OK, OK, OK, OK, NF, NF, UA, UA, UA, UA, OK]),
    (Rpc::ListUsers, [OK, OK, OK, OK, NF, NF, UA, UA, UA, UA, OK]),
    // Changing another member's role.
    (
        Rpc::UpdateUser,
        [OK, PD, PD, PD, NF, NF, UA, UA, UA, UA, OK],
    ),
    (
        Rpc::DeleteUser,
        [OK, PD, PD, PD, NF, NF, UA, UA, UA, UA, OK],
    ),
    (
        Rpc::ListAuditEvents,
        [OK, PD, PD, PD, NF, NF, UA, UA, UA, UA, OK],
    ),
    // Opening the stream; its first message needs no change.
    (
        Rpc::WatchChanges,
        [OK, PD, PD, PD, NF, NF, UA, UA, UA, UA, OK],
    ),
    // A permanent token with the Users role: anyone's own role allows it, but a token that
    // expires may not mint one that outlives it.
    (
        Rpc::CreateApiToken,
        [OK, OK, OK, OK, NF, NF, UA, UA, UA, UA, PD],
    ),
    (
        Rpc::CreateExpiringApiToken,
        [OK, OK, OK, OK, NF, NF, UA, UA, UA, UA, OK],
    ),
    (
        Rpc::ListApiTokens,
        [OK, OK, OK, OK, NF, NF, UA, UA, UA, UA, OK],
    ),
    // The administrator's token: others' tokens are invisible to members; the lower-role
    // token belongs to the administrator, so it may delete their own token.
    (
        Rpc::DeleteApiToken,
        [OK, NF, NF, OK, NF, NF, UA, UA, UA, UA, OK],
    ),
    // No credential deletes (or sees) a token above its own role: the administrator's
    // Engineers token may not delete the administrator's Administrators token.
    (
        Rpc::DeleteAdministratorsToken,
        [OK, NF, NF, NF, NF, NF, UA, UA, UA, UA, OK],
    ),
];

struct World {
    app: TestApp,
    engineer: String,
    plain: String,
    lower_role: String,
    other_admin: String,
    deleted_member_jwt: String,
    expiring: String,
}

impl World {
    async fn new() -> Self {
        let app = spawn_app().await;
        let engineer = app
            .add_member(
                app.account_id,
                "eng@acme.example",
                Role::Engineers,
                Role::Engineers,
            )
            .await
            .token;
        let plain = app
            .add_member(
                app.account_id,
                "plain@acme.example",
                Role::Users,
                Role::Users,
            )
            .await
            .token;
        let lower_role = app
            .issue_token(app.account_id, app.admin_id, Role::Engineers, None)
            .await;
        let (_, _, other_admin) = app.other_account("boss@globex.example").await;
        let removed = app
            .add_member_without_token(app.account_id, "gone@acme.example", Role::Users)
            .await;
        app.delete(&app.admin_token, removed).await.unwrap();
        let deleted_member_jwt = jwt(
            &removed.to_string(),
            app.clock_now() + TimeDelta::hours(1),
            crate::helpers::JWT_SECRET,
        );
        let expiring = app
            .issue_token(
                app.account_id,
                app.admin_id,
                Role::Administrators,
                Some(app.clock_now() + TimeDelta::hours(1)),
            )
            .await;
        Self {
            expiring,
            app,
            engineer,
            plain,
            lower_role,
            other_admin,
            deleted_member_jwt,
        }
    }

    fn authorize<T>(&self, caller: Caller, message: T) -> Request<T> {
        let app = &self.app;
        match caller {
            Caller::Admin => with_token(&app.admin_token, message),
            Caller::Engineer => with_token(&self.engineer, message),
            Caller::PlainUser => with_token(&self.plain, message),
            Caller::LowerRoleToken => with_token(&self.lower_role, message),
            Caller::OtherAccountAdmin => with_token(&self.other_admin, message),
            Caller::DeletedMember => with_bearer(&self.deleted_member_jwt, message),
            Caller::NoCredential => Request::new(message),
            Caller::ForgedApiKey => {
                with_token("umk_forgedforgedforgedforgedforgedforgedforg", message)
            }
            Caller::ExpiredJwt => with_bearer(
                &jwt(
                    &app.admin_id.to_string(),
                    app.clock_now() - TimeDelta::minutes(5),
                    crate::helpers::JWT_SECRET,
                ),
                message,
            ),
            Caller::ExpiringToken => with_token(&self.expiring, message),
            Caller::WronglySignedJwt => with_bearer(
                &jwt(
                    &app.admin_id.to_string(),
                    app.clock_now() + TimeDelta::hours(1),
                    "somebody else's secret, 32 bytes or more",
                ),
                message,
            ),
        }
    }

    /// Makes the call as the caller, on a target of its own so cells do not interfere.
    async fn call(&self, rpc: Rpc, caller: Caller, cell: &str) -> Result<(), Status> {
        let app = &self.app;
        let mut users = app.users.clone();
        let mut tokens = app.tokens.clone();
        let account_id = app.account_id.to_string();
        match rpc {
            Rpc::InviteUser => {
                let request = invite_request(
                    app.account_id,
                    "Cell",
                    &format!("{cell}@example.com"),
                    pb::Role::Users,
                );
                users
                    .invite_user(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::BatchInviteUsers => {
                let request = pb::BatchInviteUsersRequest {
                    account_id,
                    requests: vec![invite_request(
                        app.account_id,
                        "Cell",
                        &format!("{cell}@example.com"),
                        pb::Role::Users,
                    )],
                };
                users
                    .batch_invite_users(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::ResendInvitation => {
                let invited = app
                    .invite("Cell", &format!("{cell}@example.com"), pb::Role::Users)
                    .await?;
                app.advance(TimeDelta::minutes(2));
                let request = pb::ResendInvitationRequest {
                    account_id,
                    user_id: invited.id,
                    ..Default::default()
                };
                users
                    .resend_invitation(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::AcceptInvitation => {
                let request = pb::AcceptInvitationRequest {
                    token: format!("unknown-{cell}"),
                    password: None,
                };
                users
                    .accept_invitation(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::GetUser => {
                let request = pb::GetUserRequest {
                    account_id,
                    user_id: app.admin_id.to_string(),
                };
                users
                    .get_user(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::ListUsers => {
                let request = pb::ListUsersRequest {
                    account_id,
                    ..Default::default()
                };
                users
                    .list_users(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::UpdateUser => {
                let target = app
                    .add_member_without_token(
                        app.account_id,
                        &format!("{cell}@acme.example"),
                        Role::Users,
                    )
                    .await;
                let mut request = app.update_request(target);
                request.role = Some(pb::Role::Engineers as i32);
                users
                    .update_user(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::DeleteUser => {
                let target = app
                    .add_member_without_token(
                        app.account_id,
                        &format!("{cell}@acme.example"),
                        Role::Users,
                    )
                    .await;
                let request = pb::DeleteUserRequest {
                    account_id,
                    user_id: target.to_string(),
                };
                users
                    .delete_user(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::ListAuditEvents => {
                let request = pb::ListAuditEventsRequest {
                    account_id,
                    ..Default::default()
                };
                users
                    .list_audit_events(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::WatchChanges => {
                let request = pb::WatchChangesRequest {
                    account_id,
                    start_after: String::new(),
                };
                users
                    .watch_changes(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::CreateApiToken => {
                let request = pb::CreateApiTokenRequest {
                    account_id,
                    name: cell.into(),
                    role: pb::Role::Users as i32,
                    ..Default::default()
                };
                tokens
                    .create_api_token(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::CreateExpiringApiToken => {
                let expires = app.clock_now() + TimeDelta::minutes(30);
                let request = pb::CreateApiTokenRequest {
                    account_id,
                    name: cell.into(),
                    role: pb::Role::Users as i32,
                    expires_at: Some(prost_types::Timestamp {
                        seconds: expires.timestamp(),
                        nanos: 0,
                    }),
                    ..Default::default()
                };
                tokens
                    .create_api_token(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::ListApiTokens => {
                let request = pb::ListApiTokensRequest {
                    account_id,
                    ..Default::default()
                };
                tokens
                    .list_api_tokens(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
            Rpc::DeleteApiToken | Rpc::DeleteAdministratorsToken => {
                let role = match rpc {
                    Rpc::DeleteAdministratorsToken => pb::Role::Administrators,
                    _ => pb::Role::Users,
                };
                let (token, _) = app.create_token(&app.admin_token, role, None).await?;
                let request = pb::DeleteApiTokenRequest {
                    account_id,
                    token_id: token.id,
                };
                tokens
                    .delete_api_token(self.authorize(caller, request))
                    .await
                    .map(drop)
            }
        }
    }
}

#[tokio::test]
async fn every_rpc_answers_every_kind_of_caller_as_the_policy_says() {
    let world = World::new().await;
    let mut mismatches = Vec::new();
    for (rpc, expected) in POLICY {
        for (caller, expected) in CALLERS.into_iter().zip(expected) {
            let cell = format!("{rpc:?}-{caller:?}").to_lowercase();
            let got = match world.call(rpc, caller, &cell).await {
                Ok(()) => Code::Ok,
                Err(status) => status.code(),
            };
            if got != expected {
                mismatches.push(format!(
                    "{rpc:?} as {caller:?}: expected {expected:?}, got {got:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "policy violations:\n{}",
        mismatches.join("\n")
    );
}
