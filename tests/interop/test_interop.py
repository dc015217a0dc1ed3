"""Interop tests: a real `usermgmt` server, called with grpcurl and with a Python client.

Run through `tests/interop/run.sh`, which sets:
- USERMGMT_BIN: the `usermgmt` binary under test;
- USERMGMT_STUBS_DIR: Python stubs generated from proto/ by grpc_tools.protoc;
- GRPCURL: the grpcurl binary.

Every test gets its own server on its own SQLite database, started on a port the kernel
picks; the fixture learns the address from the server's JSON log. With no SMTP URL set,
the server writes invitation emails as `.eml` files into the test's own mail folder, which
the tests poll (for at most MAIL_TIMEOUT) to take the accept link's secret out; `usermgmt
issue-token` runs beside the server on the same database, as the README's walk-through does.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import html
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run these tests through tests/interop/run.sh")
    return value


USERMGMT_BIN = _required_env("USERMGMT_BIN")
GRPCURL = _required_env("GRPCURL")
sys.path.insert(0, _required_env("USERMGMT_STUBS_DIR"))

# The error details come from this repository's proto/google/rpc, generated beside ours.
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from usermgmt.v1 import usermgmt_pb2, usermgmt_pb2_grpc  # noqa: E402

SERVICE = "usermgmt.v1.UserManagement"
TOKENS = "usermgmt.v1.ApiTokens"
HEALTH = "grpc.health.v1.Health"
ADMIN_EMAIL = "admin@example.com"
# Not plain ASCII on purpose: invitation subjects must carry it RFC 2047-encoded.
ACCOUNT_NAME = "Interop Zürich"

STARTUP_TIMEOUT = 30.0  # seconds to wait for the "gRPC server listening" log line
SHUTDOWN_TIMEOUT = 30.0  # seconds to wait for the server to exit after SIGTERM
CALL_TIMEOUT = 10.0  # seconds for any one RPC or grpcurl run
MAIL_TIMEOUT = 10.0  # seconds to wait for the notifier to write an invitation's .eml file

LISTENING_MESSAGE = "gRPC server listening"


# --------------------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------------------


@dataclass
class Server:
    addr: str
    account_id: str
    admin_user_id: str
    token: str
    log: list[str] = field(repr=False)
    # The server's environment: the CLI (`issue-token`) runs with it, on the same database.
    env: dict[str, str] = field(repr=False)
    # Where the notifier writes `<outbox id>.eml` files (no SMTP URL is set).
    mail_dir: Path = field(repr=False)
    # The server's log lines not read yet; `None` once it exited.
    inbox: queue.Queue = field(repr=False)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"APIKey {self.token}"),)


def _server_env(tmp: Path) -> dict[str, str]:
    # Start from the caller's environment, minus any usermgmt setting it may carry, so
    # that the server runs with exactly the settings below and the documented defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERMGMT_")}
    env.update(
        USERMGMT_DATABASE_URL=f"sqlite://{tmp}/interop.db?mode=rwc",
        USERMGMT_MAIL_DIR=str(tmp / "mail"),
        USERMGMT_LISTEN_ADDR="127.0.0.1:0",
        USERMGMT_LOG_FORMAT="json",
        RUST_LOG="info",
    )
    return env


def _bootstrap(env: dict[str, str]) -> dict[str, str]:
    result = subprocess.run(
        [USERMGMT_BIN, "bootstrap", "--account-name", ACCOUNT_NAME, "--admin-email", ADMIN_EMAIL],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )
    assert result.returncode == 0, (
        f"bootstrap exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"bootstrap must print one JSON line, printed:\n{result.stdout}"
    created = json.loads(lines[0])
    for key in ("account_id", "user_id", "api_token"):
        assert created.get(key), f"bootstrap output lacks {key!r}: {lines[0]}"
    return created


def _drain(stream, lines: list[str], inbox: queue.Queue) -> None:
    """Reads the server's stderr to its end, so that the pipe never fills up."""
    for line in stream:
        line = line.rstrip("\n")
        lines.append(line)
        inbox.put(line)
    inbox.put(None)  # end of stream: the server exited


def _listening_addr(line: str) -> str | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    fields = record.get("fields") if isinstance(record, dict) else None
    if isinstance(fields, dict) and fields.get("message") == LISTENING_MESSAGE:
        return fields.get("addr")
    return None


def _wait_for_listening(inbox: queue.Queue, log: list[str]) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(
                f"no {LISTENING_MESSAGE!r} log line within {STARTUP_TIMEOUT:.0f} s; log:\n"
                + "\n".join(log)
            )
        try:
            line = inbox.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            pytest.fail(
                f"the server exited before logging {LISTENING_MESSAGE!r}; log:\n" + "\n".join(log)
            )
        addr = _listening_addr(line)
        if addr:
            return addr


def _is_serving(channel: grpc.Channel) -> bool:
    """Calls grpc.health.v1.Health/Check for the whole server, with hand-encoded messages.

    The request (`string service = 1`) is empty for the whole server; the response is
    `ServingStatus status = 1`, and SERVING (1) encodes as the bytes 08 01.
    """
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    return check(b"", timeout=CALL_TIMEOUT) == b"\x08\x01"


def _assert_serving(addr: str) -> None:
    """The server reports SERVING before it logs that it listens, so one check must pass."""
    with grpc.insecure_channel(addr) as channel:
        assert _is_serving(channel), "the health check did not answer SERVING"


@pytest.fixture
def server(tmp_path: Path):
    env = _server_env(tmp_path)
    created = _bootstrap(env)

    log: list[str] = []
    inbox: queue.Queue = queue.Queue()
    with open(tmp_path / "serve.stdout", "w") as stdout:
        process = subprocess.Popen(
            [USERMGMT_BIN, "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
    drainer = threading.Thread(target=_drain, args=(process.stderr, log, inbox), daemon=True)
    drainer.start()
    try:
        addr = _wait_for_listening(inbox, log)
        _assert_serving(addr)
        yield Server(
            addr=addr,
            account_id=created["account_id"],
            admin_user_id=created["user_id"],
            token=created["api_token"],
            log=log,
            env=env,
            mail_dir=tmp_path / "mail",
            inbox=inbox,
        )
    finally:
        exited_early = process.poll()
        if exited_early is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        drainer.join(timeout=5)
        # Shown by pytest only when the test fails.
        print("---- server log ----")
        print("\n".join(log))
    assert exited_early is None, f"the server exited on its own with code {exited_early}"
    assert code is not None, f"the server did not exit within {SHUTDOWN_TIMEOUT:.0f} s of SIGTERM"
    assert code == 0, f"the server exited with code {code} after SIGTERM"


# --------------------------------------------------------------------------------------
# grpcurl
# --------------------------------------------------------------------------------------


def grpcurl(
    server: Server,
    *args: str,
    data: dict | None = None,
    auth: bool = True,
    token: str | None = None,
    headers: tuple[str, ...] = (),
    flags: tuple[str, ...] = (),
):
    """Runs grpcurl against the server, with the administrator's token unless told otherwise."""
    command = [GRPCURL, "-plaintext", *flags]
    if auth:
        command += ["-H", f"authorization: APIKey {token or server.token}"]
    for header in headers:
        command += ["-H", header]
    if data is not None:
        command += ["-d", json.dumps(data)]
    command += [server.addr, *args]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=CALL_TIMEOUT
    )


def grpcurl_ok(server: Server, *args: str, **kwargs) -> str:
    result = grpcurl(server, *args, **kwargs)
    assert result.returncode == 0, (
        f"grpcurl {' '.join(args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def grpcurl_json(server: Server, method: str, data: dict, **kwargs) -> dict:
    return json.loads(grpcurl_ok(server, method, data=data, **kwargs))


def ada_invite(server: Server) -> dict:
    return {
        "account_id": server.account_id,
        "name": "Ada Lovelace",
        "email": "Ada@Example.com",
        "language": "LANGUAGE_EN",
        "role": "ROLE_ENGINEERS",
    }


def test_grpcurl_list_services(server):
    services = grpcurl_ok(server, "list", auth=False).split()
    assert SERVICE in services
    assert TOKENS in services
    assert HEALTH in services


def test_grpcurl_describe_service(server):
    description = grpcurl_ok(server, "describe", SERVICE, auth=False)
    for rpc in (
        "InviteUser",
        "BatchInviteUsers",
        "ResendInvitation",
        "AcceptInvitation",
        "GetUser",
        "UpdateUser",
        "DeleteUser",
        "ListAuditEvents",
        "ListUsers",
        "WatchChanges",
    ):
        assert re.search(rf"\brpc {rpc}\s*\(", description), f"no {rpc} in:\n{description}"


def test_grpcurl_describe_api_tokens(server):
    description = grpcurl_ok(server, "describe", TOKENS, auth=False)
    for rpc in ("CreateApiToken", "ListApiTokens", "DeleteApiToken"):
        assert re.search(rf"\brpc {rpc}\s*\(", description), f"no {rpc} in:\n{description}"


@pytest.mark.parametrize("message", ["ErrorInfo", "BadRequest", "RetryInfo"])
def test_grpcurl_describes_error_details(server, message):
    # The error details are served by reflection, so that grpcurl can print them as JSON.
    description = grpcurl_ok(server, "describe", f"google.rpc.{message}", auth=False)
    assert f"message {message} {{" in description, description


@pytest.mark.parametrize("service", [SERVICE, ""], ids=["service", "server"])
def test_grpcurl_health_check(server, service):
    # The response of an empty-service check is the same message, so one assertion fits both.
    response = grpcurl_json(server, f"{HEALTH}/Check", {"service": service}, auth=False)
    assert response == {"status": "SERVING"}


def test_grpcurl_invite_list_get(server):
    invited = grpcurl_json(server, f"{SERVICE}/InviteUser", ada_invite(server))["user"]
    assert invited["status"] == "USER_STATUS_INVITED"
    assert invited["email"] == "ada@example.com"
    assert invited["name"] == "Ada Lovelace"
    assert invited["id"]

    # grpcurl prints the JSON names (json_name) of the descriptors the server reflects.
    listed = grpcurl_json(server, f"{SERVICE}/ListUsers", {"account_id": server.account_id})
    assert listed["totalSize"] == 2
    assert sorted(user["email"] for user in listed["users"]) == sorted(
        [ADMIN_EMAIL, "ada@example.com"]
    )

    fetched = grpcurl_json(
        server,
        f"{SERVICE}/GetUser",
        {"account_id": server.account_id, "user_id": invited["id"]},
    )["user"]
    assert fetched["id"] == invited["id"]
    assert fetched["email"] == "ada@example.com"
    assert fetched["status"] == "USER_STATUS_INVITED"


def test_grpcurl_without_credential_is_unauthenticated(server):
    result = grpcurl(
        server, f"{SERVICE}/ListUsers", data={"account_id": server.account_id}, auth=False
    )
    assert result.returncode != 0, f"expected a failure, got:\n{result.stdout}"
    assert "Unauthenticated" in result.stderr


def test_grpcurl_invalid_invite_is_invalid_argument(server):
    invite = ada_invite(server) | {"email": "not-an-email"}
    result = grpcurl(server, f"{SERVICE}/InviteUser", data=invite)
    assert result.returncode != 0, f"expected a failure, got:\n{result.stdout}"
    assert "InvalidArgument" in result.stderr


def test_grpcurl_batch_invite_answers_each_row(server):
    bad = ada_invite(server) | {"email": "not-an-email", "account_id": ""}
    good = ada_invite(server) | {"email": "batch.grpcurl@example.com", "account_id": ""}
    answer = grpcurl_json(
        server,
        f"{SERVICE}/BatchInviteUsers",
        {"account_id": server.account_id, "requests": [good, bad]},
    )
    first, second = answer["results"]
    assert first["user"]["email"] == "batch.grpcurl@example.com"
    assert first["user"]["status"] == "USER_STATUS_INVITED"
    assert second["error"]["code"] == 3, second
    # grpcurl decodes the details through reflection, as for a failed call.
    details = second["error"]["details"]
    bad_request = next(d for d in details if d["@type"].endswith("google.rpc.BadRequest"))
    assert [v["field"] for v in bad_request["fieldViolations"]] == ["email"]


# --------------------------------------------------------------------------------------
# Invitation emails and the CLI
# --------------------------------------------------------------------------------------


def _read_email(path: Path) -> EmailMessage:
    with open(path, "rb") as file:
        return email.message_from_binary_file(file, policy=email.policy.default)


def _recipients(message: EmailMessage) -> list[str]:
    return [address.addr_spec.lower() for address in message["To"].addresses]


def wait_for_email(server: Server, to: str) -> Path:
    """Waits, up to MAIL_TIMEOUT, for an .eml file addressed to `to`.

    The notifier writes each email under a hidden name, renames it to `<id>.eml` (so an
    `.eml` file is always complete), then logs "email sent": the folder is looked into
    again each time the server logs a line.
    """
    deadline = time.monotonic() + MAIL_TIMEOUT
    while True:
        if server.mail_dir.is_dir():
            for path in sorted(server.mail_dir.glob("*.eml")):
                if to.lower() in _recipients(_read_email(path)):
                    return path
        if time.monotonic() >= deadline:
            files = [p.name for p in sorted(server.mail_dir.glob("*"))]
            pytest.fail(
                f"no email to {to} in {server.mail_dir} within {MAIL_TIMEOUT:.0f} s "
                f"(files: {files})"
            )
        try:
            line = server.inbox.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            continue
        if line is None:
            pytest.fail(f"the server exited before an email to {to} was written")


SECRET_IN_LINK = re.compile(r"[?&]token=([A-Za-z0-9_-]+)")


def invitation_secret(message: EmailMessage) -> str:
    """The secret from the accept link: the same one in the text part and the HTML part."""
    text_part = message.get_body(preferencelist=("plain",))
    assert text_part is not None, f"no text/plain part in:\n{message}"
    # Quoted-printable for mostly-ASCII text (English, German), base64 for the rest.
    encoding = text_part["Content-Transfer-Encoding"]
    assert encoding in ("quoted-printable", "base64"), f"text part in {encoding}"
    text_secrets = set(SECRET_IN_LINK.findall(text_part.get_content()))
    assert len(text_secrets) == 1, f"want one ?token= link in the text part:\n{text_part}"
    secret = text_secrets.pop()

    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None, f"no text/html part in:\n{message}"
    html_secrets = set(SECRET_IN_LINK.findall(html.unescape(html_part.get_content())))
    assert html_secrets == {secret}, f"the HTML part links {html_secrets}, the text {secret}"
    return secret


def readme_secret(path: Path) -> str:
    """The secret, taken out exactly as the README's walk-through does it."""
    with open(path, "rb") as file:
        message = email.message_from_binary_file(file)
    text = message.get_payload()[0].get_payload(decode=True).decode()
    return re.search(r"token=([\w-]+)", text).group(1)


def issue_token(server: Server, email_address: str, *args: str) -> dict:
    """Runs `usermgmt issue-token` beside the running server, on the same database."""
    result = subprocess.run(
        [
            USERMGMT_BIN,
            "issue-token",
            "--account-id",
            server.account_id,
            "--email",
            email_address,
            *args,
        ],
        check=False,
        env=server.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )
    assert result.returncode == 0, (
        f"issue-token exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"issue-token must print one JSON line, printed:\n{result.stdout}"
    issued = json.loads(lines[0])
    assert set(issued) == {"token_id", "user_id", "role", "api_token"}, lines[0]
    return issued


# --------------------------------------------------------------------------------------
# grpcurl: the README's walk-through
# --------------------------------------------------------------------------------------


def grpcurl_error(server: Server, method: str, data: dict, **kwargs):
    """Runs a call that must fail; returns grpcurl's result and its error as JSON.

    The call is made twice: as an operator types it (the human-readable error, on stderr),
    and with `-format-error` (the same status as JSON, also on stderr).
    """
    readable = grpcurl(server, method, data=data, **kwargs)
    assert readable.returncode != 0, f"{method} must fail, printed:\n{readable.stdout}"
    formatted = grpcurl(server, method, data=data, flags=("-format-error",), **kwargs)
    assert formatted.returncode == readable.returncode, formatted
    return readable, json.loads(formatted.stderr)


def test_grpcurl_walk_through(server):
    account = server.account_id
    auth = {"account_id": account}

    # What the server offers
    services = grpcurl_ok(server, "list", auth=False).split()
    assert {SERVICE, TOKENS, HEALTH} <= set(services), services

    # Invite Ada: INVITED, with the link's expiry
    invited = grpcurl_json(server, f"{SERVICE}/InviteUser", ada_invite(server))["user"]
    ada = invited["id"]
    assert invited["status"] == "USER_STATUS_INVITED"
    assert invited["role"] == "ROLE_ENGINEERS"
    assert invited["invitationExpiresAt"]

    # The email lands in the mail folder; its link carries the secret.
    path = wait_for_email(server, "ada@example.com")
    secret = readme_secret(path)
    assert secret == invitation_secret(_read_email(path))

    # Accept it with no credential; a new user sets a password.
    accepted = grpcurl_json(
        server,
        f"{SERVICE}/AcceptInvitation",
        {"token": secret, "password": "a long secret password"},
        auth=False,
    )
    assert accepted == {"userId": ada, "accountId": account}

    # The members: both are active now; a search finds Ada; GetUser shows her accepted.
    active = grpcurl_json(server, f"{SERVICE}/ListUsers", auth | {"status": "USER_STATUS_ACTIVE"})
    assert active["totalSize"] == 2, active
    assert sorted(u["email"] for u in active["users"]) == sorted([ADMIN_EMAIL, "ada@example.com"])
    assert {u["status"] for u in active["users"]} == {"USER_STATUS_ACTIVE"}
    found = grpcurl_json(
        server, f"{SERVICE}/ListUsers", auth | {"search": "lovelace", "page_size": 10}
    )
    assert [u["id"] for u in found["users"]] == [ada], found
    fetched = grpcurl_json(server, f"{SERVICE}/GetUser", auth | {"user_id": ada})["user"]
    assert fetched["status"] == "USER_STATUS_ACTIVE"
    assert fetched["acceptedAt"]
    assert "invitationExpiresAt" not in fetched

    # Change Ada's role
    updated = grpcurl_json(
        server, f"{SERVICE}/UpdateUser", auth | {"user_id": ada, "role": "ROLE_USERS"}
    )["user"]
    assert updated["id"] == ada
    assert updated["role"] == "ROLE_USERS"

    # An operator issues Ada a token from the command line, beside the running server.
    issued = issue_token(server, "ada@example.com", "--name", "Ada's deploy key")
    assert issued["user_id"] == ada
    assert issued["role"] == "ROLE_USERS"  # the member's role, by default, as the API spells it
    assert issued["api_token"]

    # Removing Ada is refused while her token lives.
    delete_ada = auth | {"user_id": ada}
    refused, status = grpcurl_error(server, f"{SERVICE}/DeleteUser", delete_ada)
    assert "FailedPrecondition" in refused.stderr, refused.stderr
    assert "You can't remove the user as they have active tokens." in refused.stderr
    # The ErrorInfo detail is printed as readable JSON, since reflection serves its type.
    assert re.search(r'"reason"\s*:\s*"USER_HAS_ACTIVE_TOKENS"', refused.stderr), refused.stderr
    assert re.search(
        r'"@type"\s*:\s*"type\.googleapis\.com/google\.rpc\.ErrorInfo"', refused.stderr
    ), refused.stderr
    assert status["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0], status
    assert status["message"] == "You can't remove the user as they have active tokens."
    assert status["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "domain": "usermgmt",
            "reason": "USER_HAS_ACTIVE_TOKENS",
        }
    ], status
    still_there = grpcurl_json(server, f"{SERVICE}/GetUser", delete_ada)["user"]
    assert still_there["status"] == "USER_STATUS_ACTIVE"

    # Find her token, delete it, then remove her.
    tokens = grpcurl_json(server, f"{TOKENS}/ListApiTokens", auth | {"issued_by": ada})
    assert [t["id"] for t in tokens["tokens"]] == [issued["token_id"]], tokens
    token = tokens["tokens"][0]
    assert token["name"] == "Ada's deploy key"
    assert token["role"] == "ROLE_USERS"
    assert token["issuer"]["userId"] == ada
    assert token["issuer"]["email"] == "ada@example.com"
    assert not token.get("expired", False)
    assert (
        grpcurl_json(server, f"{TOKENS}/DeleteApiToken", auth | {"token_id": issued["token_id"]})
        == {}
    )
    left = grpcurl_json(server, f"{TOKENS}/ListApiTokens", auth | {"issued_by": ada})
    assert left.get("tokens", []) == [], left
    assert (
        grpcurl_json(
            server, f"{SERVICE}/DeleteUser", delete_ada, headers=("x-request-id: walk-delete-ada",)
        )
        == {}
    )

    # She is gone from the account.
    remaining = grpcurl_json(server, f"{SERVICE}/ListUsers", auth)
    assert [u["email"] for u in remaining["users"]] == [ADMIN_EMAIL], remaining
    gone, gone_status = grpcurl_error(server, f"{SERVICE}/GetUser", delete_ada)
    assert "NotFound" in gone.stderr, gone.stderr
    assert gone_status["code"] == grpc.StatusCode.NOT_FOUND.value[0]

    # Who did what, newest first
    events = grpcurl_json(server, f"{SERVICE}/ListAuditEvents", auth)["events"]
    assert [e["action"] for e in events] == [
        "AUDIT_ACTION_USER_DELETED",
        "AUDIT_ACTION_API_TOKEN_DELETED",
        "AUDIT_ACTION_API_TOKEN_CREATED",
        "AUDIT_ACTION_USER_UPDATED",
        "AUDIT_ACTION_INVITATION_ACCEPTED",
        "AUDIT_ACTION_USER_INVITED",
    ], json.dumps(events, indent=2)
    deleted, token_deleted, token_created, user_updated, invitation_accepted, user_invited = events
    assert {e["targetUserId"] for e in events} == {ada}
    assert {e["accountId"] for e in events} == {account}
    assert deleted["actorUserId"] == server.admin_user_id
    assert deleted["requestId"] == "walk-delete-ada"
    assert token_deleted["actorUserId"] == server.admin_user_id
    assert token_deleted["targetTokenId"] == issued["token_id"]
    assert token_created["actorUserId"] == ada
    assert token_created["targetTokenId"] == issued["token_id"]
    assert user_updated["actorUserId"] == server.admin_user_id
    assert user_updated["changes"] == [
        {"field": "role", "before": "ROLE_ENGINEERS", "after": "ROLE_USERS"}
    ], user_updated
    assert invitation_accepted["actorUserId"] == ada
    assert user_invited["actorUserId"] == server.admin_user_id
    times = [e["createTime"] for e in events]
    parsed = [_timestamp(t) for t in times]
    assert parsed == sorted(parsed, reverse=True), times

    # The same events, filtered on the member and on one action
    about_ada = grpcurl_json(server, f"{SERVICE}/ListAuditEvents", auth | {"target_user_id": ada})
    assert [e["id"] for e in about_ada["events"]] == [e["id"] for e in events]
    only_deleted = grpcurl_json(
        server, f"{SERVICE}/ListAuditEvents", auth | {"action": "AUDIT_ACTION_USER_DELETED"}
    )
    assert [e["id"] for e in only_deleted["events"]] == [deleted["id"]]


def _timestamp(text: str) -> int:
    """An RFC 3339 timestamp, as nanoseconds since the epoch."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp.ToNanoseconds()


def test_grpcurl_resend_too_soon_prints_retry_info(server):
    ada = grpcurl_json(server, f"{SERVICE}/InviteUser", ada_invite(server))["user"]["id"]
    request = {"account_id": server.account_id, "user_id": ada}
    refused, status = grpcurl_error(server, f"{SERVICE}/ResendInvitation", request)
    assert "ResourceExhausted" in refused.stderr, refused.stderr
    assert re.search(
        r'"@type"\s*:\s*"type\.googleapis\.com/google\.rpc\.RetryInfo"', refused.stderr
    ), refused.stderr
    assert status["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], status
    retry = [d for d in status["details"] if d["@type"].endswith("/google.rpc.RetryInfo")]
    assert len(retry) == 1, status
    # A google.protobuf.Duration in JSON: seconds with an "s" suffix, e.g. "59.5s".
    delay = float(retry[0]["retryDelay"].removesuffix("s"))
    assert 0 < delay <= 60, retry


# --------------------------------------------------------------------------------------
# Generated Python client
# --------------------------------------------------------------------------------------


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.addr) as channel:
        yield channel


@pytest.fixture
def stub(channel):
    return usermgmt_pb2_grpc.UserManagementStub(channel)


@pytest.fixture
def tokens_stub(channel):
    return usermgmt_pb2_grpc.ApiTokensStub(channel)


def invite(stub, server: Server, name: str, email: str) -> usermgmt_pb2.User:
    request = usermgmt_pb2.InviteUserRequest(
        account_id=server.account_id,
        name=name,
        email=email,
        language=usermgmt_pb2.LANGUAGE_EN,
        role=usermgmt_pb2.ROLE_USERS,
    )
    return stub.InviteUser(request, metadata=server.metadata, timeout=CALL_TIMEOUT).user


def test_client_batch_invite_returns_rows_in_order_with_their_status(server, stub):
    rows = [
        usermgmt_pb2.InviteUserRequest(
            name="Batch One",
            email="batch.one@example.com",
            language=usermgmt_pb2.LANGUAGE_EN,
            role=usermgmt_pb2.ROLE_USERS,
            send_email=False,
        ),
        usermgmt_pb2.InviteUserRequest(
            name="Batch One Again",
            email="Batch.One@example.com",
            language=usermgmt_pb2.LANGUAGE_EN,
            role=usermgmt_pb2.ROLE_USERS,
        ),
    ]
    answer = stub.BatchInviteUsers(
        usermgmt_pb2.BatchInviteUsersRequest(account_id=server.account_id, requests=rows),
        metadata=server.metadata,
        timeout=CALL_TIMEOUT,
    )
    first, second = answer.results
    assert first.WhichOneof("result") == "user"
    assert first.user.email == "batch.one@example.com"
    assert "token=" in first.accept_url
    assert second.WhichOneof("result") == "error"
    assert second.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(info) for detail in second.error.details)
    assert info.reason == "ALREADY_INVITED"
    assert info.metadata["user_id"] == first.user.id


def get_user(stub, server: Server, user_id: str) -> usermgmt_pb2.User:
    return stub.GetUser(
        usermgmt_pb2.GetUserRequest(account_id=server.account_id, user_id=user_id),
        metadata=server.metadata,
        timeout=CALL_TIMEOUT,
    ).user


def test_client_invite_list_get(server, stub):
    user = invite(stub, server, "Grace Hopper", "Grace.Hopper@Example.com")
    assert user.id
    assert user.account_id == server.account_id
    assert user.email == "grace.hopper@example.com"
    assert user.status == usermgmt_pb2.USER_STATUS_INVITED
    assert user.role == usermgmt_pb2.ROLE_USERS
    assert user.HasField("invitation_expires_at")

    listed = stub.ListUsers(
        usermgmt_pb2.ListUsersRequest(account_id=server.account_id),
        metadata=server.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert listed.total_size == 2
    assert sorted(u.email for u in listed.users) == sorted(
        [ADMIN_EMAIL, "grace.hopper@example.com"]
    )
    assert listed.next_page_token == ""

    fetched = get_user(stub, server, user.id)
    assert fetched.id == user.id
    assert fetched.email == "grace.hopper@example.com"
    assert fetched.name == "Grace Hopper"
    assert fetched.status == usermgmt_pb2.USER_STATUS_INVITED


def test_client_invite_twice_is_already_exists(server, stub):
    invite(stub, server, "Grace Hopper", "grace@example.com")
    with pytest.raises(grpc.RpcError) as raised:
        invite(stub, server, "Grace Hopper", "grace@example.com")
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS, raised.value.details()


def test_error_details_are_generated_from_this_repository():
    # A client needs nothing beyond proto/: the google.rpc messages it decodes details with
    # are the ones generated from the repository's copies.
    stubs = Path(_required_env("USERMGMT_STUBS_DIR")).resolve()
    for module in (status_pb2, error_details_pb2):
        assert stubs in Path(module.__file__).resolve().parents, module.__file__


def test_client_invalid_invite_has_bad_request_details(server, stub):
    with pytest.raises(grpc.RpcError) as raised:
        invite(stub, server, "Grace Hopper", "not-an-email")
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()

    trailers = dict(error.trailing_metadata() or ())
    assert "grpc-status-details-bin" in trailers, f"no status details; trailers: {trailers}"
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]

    bad_requests = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            bad_requests.append(bad_request)
    assert bad_requests, f"no google.rpc.BadRequest among {[d.type_url for d in status.details]}"
    violated = {v.field for b in bad_requests for v in b.field_violations}
    assert "email" in violated, f"field violations name {violated}"


def test_client_list_users_pages(server, stub):
    emails = [f"user{i}@example.com" for i in range(1, 6)]
    for i, address in enumerate(emails, start=1):
        invite(stub, server, f"User {i}", address)

    seen: list[usermgmt_pb2.User] = []
    page_token = ""
    for _ in range(10):  # 3 pages expected; bounded so that a token loop cannot hang
        page = stub.ListUsers(
            usermgmt_pb2.ListUsersRequest(
                account_id=server.account_id, page_size=2, page_token=page_token
            ),
            metadata=server.metadata,
            timeout=CALL_TIMEOUT,
        )
        assert len(page.users) <= 2
        assert page.total_size == 6
        seen.extend(page.users)
        page_token = page.next_page_token
        if not page_token:
            break
    else:
        pytest.fail("ListUsers kept returning a next_page_token after 10 pages")

    ids = [user.id for user in seen]
    assert len(ids) == 6, f"pages held {len(ids)} users: {[u.email for u in seen]}"
    assert len(set(ids)) == 6, f"a user appeared on two pages: {[u.email for u in seen]}"
    assert sorted(user.email for user in seen) == sorted([ADMIN_EMAIL, *emails])


def api_key(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"APIKey {secret}"),)


def status_details(error: grpc.RpcError) -> status_pb2.Status:
    """The google.rpc.Status the server sent in `grpc-status-details-bin`."""
    trailers = dict(error.trailing_metadata() or ())
    assert "grpc-status-details-bin" in trailers, f"no status details; trailers: {trailers}"
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == error.code().value[0], status
    assert status.message == error.details(), status
    return status


def unpack_details(status: status_pb2.Status, message_type):
    """Every detail of `message_type` in the status."""
    found = []
    for detail in status.details:
        if detail.Is(message_type.DESCRIPTOR):
            message = message_type()
            detail.Unpack(message)
            found.append(message)
    return found


def invite_and_read_email(
    stub, server: Server, email_address: str, language=usermgmt_pb2.LANGUAGE_EN, **fields
) -> tuple[usermgmt_pb2.User, EmailMessage]:
    request = usermgmt_pb2.InviteUserRequest(
        account_id=server.account_id,
        name=fields.pop("name", "Grace Hopper"),
        email=email_address,
        language=language,
        role=fields.pop("role", usermgmt_pb2.ROLE_USERS),
        **fields,
    )
    user = stub.InviteUser(request, metadata=server.metadata, timeout=CALL_TIMEOUT).user
    return user, _read_email(wait_for_email(server, email_address))


def accept(stub, secret: str, password: str | None = "a long secret password"):
    # No metadata at all: the secret is the credential.
    return stub.AcceptInvitation(
        usermgmt_pb2.AcceptInvitationRequest(token=secret, password=password),
        timeout=CALL_TIMEOUT,
    )


def list_users(stub, server: Server, metadata=None) -> usermgmt_pb2.ListUsersResponse:
    return stub.ListUsers(
        usermgmt_pb2.ListUsersRequest(account_id=server.account_id),
        metadata=metadata or server.metadata,
        timeout=CALL_TIMEOUT,
    )


def list_tokens(tokens_stub, server: Server, metadata=None, **filters) -> list:
    return list(
        tokens_stub.ListApiTokens(
            usermgmt_pb2.ListApiTokensRequest(account_id=server.account_id, **filters),
            metadata=metadata or server.metadata,
            timeout=CALL_TIMEOUT,
        ).tokens
    )


def test_client_api_token_lifecycle(server, stub, tokens_stub):
    expires_at = timestamp_pb2.Timestamp(seconds=int(time.time()) + 86_400)
    created = tokens_stub.CreateApiToken(
        usermgmt_pb2.CreateApiTokenRequest(
            account_id=server.account_id,
            name="CI",
            description="for the pipeline",
            role=usermgmt_pb2.ROLE_USERS,
            expires_at=expires_at,
        ),
        metadata=server.metadata,
        timeout=CALL_TIMEOUT,
    )
    token = created.token
    assert created.secret
    assert token.id
    assert token.account_id == server.account_id
    assert token.name == "CI"
    assert token.description == "for the pipeline"
    assert token.role == usermgmt_pb2.ROLE_USERS
    assert token.expires_at == expires_at
    assert not token.expired
    assert token.issuer.user_id == server.admin_user_id
    assert token.issuer.email == ADMIN_EMAIL
    assert not token.issuer.deleted

    # The secret is a credential of its own.
    listed = list_users(stub, server, metadata=api_key(created.secret))
    assert [u.email for u in listed.users] == [ADMIN_EMAIL]
    assert token.id in [t.id for t in list_tokens(tokens_stub, server)]

    tokens_stub.DeleteApiToken(
        usermgmt_pb2.DeleteApiTokenRequest(account_id=server.account_id, token_id=token.id),
        metadata=server.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert token.id not in [t.id for t in list_tokens(tokens_stub, server)]

    with pytest.raises(grpc.RpcError) as raised:
        list_users(stub, server, metadata=api_key(created.secret))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED, raised.value.details()

    events = stub.ListAuditEvents(
        usermgmt_pb2.ListAuditEventsRequest(account_id=server.account_id),
        metadata=server.metadata,
        timeout=CALL_TIMEOUT,
    ).events
    assert [(e.action, e.target_token_id, e.actor_user_id) for e in events] == [
        (usermgmt_pb2.AUDIT_ACTION_API_TOKEN_DELETED, token.id, server.admin_user_id),
        (usermgmt_pb2.AUDIT_ACTION_API_TOKEN_CREATED, token.id, server.admin_user_id),
    ]


def test_client_member_tokens_block_removal(server, stub, tokens_stub):
    ada, message = invite_and_read_email(
        stub, server, "ada@example.com", name="Ada Lovelace", role=usermgmt_pb2.ROLE_ENGINEERS
    )
    accept(stub, invitation_secret(message))

    # Ada gets a key from an operator, and issues a second token with it herself.
    issued = issue_token(
        server, "ada@example.com", "--role", "ROLE_ENGINEERS", "--name", "Ada's deploy key"
    )
    assert issued["role"] == "ROLE_ENGINEERS"
    ada_key = api_key(issued["api_token"])
    own = tokens_stub.CreateApiToken(
        usermgmt_pb2.CreateApiTokenRequest(
            account_id=server.account_id, name="Ada's CI", role=usermgmt_pb2.ROLE_USERS
        ),
        metadata=ada_key,
        timeout=CALL_TIMEOUT,
    ).token
    assert own.issuer.user_id == ada.id
    assert not own.HasField("expires_at")
    # A member who is not an administrator sees only her own tokens.
    assert [t.id for t in list_tokens(tokens_stub, server, metadata=ada_key)] == [
        issued["token_id"],
        own.id,
    ]

    delete_ada = usermgmt_pb2.DeleteUserRequest(account_id=server.account_id, user_id=ada.id)
    with pytest.raises(grpc.RpcError) as raised:
        stub.DeleteUser(delete_ada, metadata=server.metadata, timeout=CALL_TIMEOUT)
    error = raised.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    assert error.details() == "You can't remove the user as they have active tokens."
    infos = unpack_details(status_details(error), error_details_pb2.ErrorInfo)
    assert [(i.domain, i.reason) for i in infos] == [("usermgmt", "USER_HAS_ACTIVE_TOKENS")]

    # Ada deletes her own token; the administrator deletes the operator's one.
    tokens_stub.DeleteApiToken(
        usermgmt_pb2.DeleteApiTokenRequest(account_id=server.account_id, token_id=own.id),
        metadata=ada_key,
        timeout=CALL_TIMEOUT,
    )
    with pytest.raises(grpc.RpcError) as raised:
        stub.DeleteUser(delete_ada, metadata=server.metadata, timeout=CALL_TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION, raised.value.details()
    tokens_stub.DeleteApiToken(
        usermgmt_pb2.DeleteApiTokenRequest(
            account_id=server.account_id, token_id=issued["token_id"]
        ),
        metadata=server.metadata,
        timeout=CALL_TIMEOUT,
    )
    with pytest.raises(grpc.RpcError) as raised:
        list_users(stub, server, metadata=ada_key)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED, raised.value.details()

    stub.DeleteUser(delete_ada, metadata=server.metadata, timeout=CALL_TIMEOUT)
    assert [u.email for u in list_users(stub, server).users] == [ADMIN_EMAIL]


INVITATION_SUBJECTS = {
    usermgmt_pb2.LANGUAGE_EN: f"You are invited to {ACCOUNT_NAME}",
    usermgmt_pb2.LANGUAGE_DE: f"Einladung zu {ACCOUNT_NAME}",
    usermgmt_pb2.LANGUAGE_ZH: f"邀请您加入 {ACCOUNT_NAME}",
    usermgmt_pb2.LANGUAGE_RU: f"Приглашение в {ACCOUNT_NAME}",
}


@pytest.mark.parametrize(
    "language",
    list(INVITATION_SUBJECTS),
    ids=[usermgmt_pb2.Language.Name(language) for language in INVITATION_SUBJECTS],
)
def test_client_invitation_email_subject_per_language(server, stub, language):
    user, message = invite_and_read_email(stub, server, "grace@example.com", language=language)
    expected = INVITATION_SUBJECTS[language]

    assert message["Subject"] == expected
    assert _recipients(message) == ["grace@example.com"]
    assert message["To"].addresses[0].display_name == "Grace Hopper"
    assert message["Message-ID"]

    # The raw header is 7-bit (RFC 2047 encoded words); the classic API decodes it too.
    raw = email.message_from_bytes(message.as_bytes(), policy=email.policy.compat32)
    raw_subject = raw["Subject"]
    assert isinstance(raw_subject, str) and raw_subject.isascii(), raw_subject
    decoded = str(email.header.make_header(email.header.decode_header(raw_subject)))
    assert decoded == expected

    assert ACCOUNT_NAME in message.get_body(preferencelist=("plain",)).get_content()
    assert invitation_secret(message)


def test_client_accept_invitation_twice_is_not_found(server, stub):
    user, message = invite_and_read_email(stub, server, "grace@example.com")
    secret = invitation_secret(message)

    accepted = accept(stub, secret)
    assert accepted.user_id == user.id
    assert accepted.account_id == server.account_id

    fetched = get_user(stub, server, user.id)
    assert fetched.status == usermgmt_pb2.USER_STATUS_ACTIVE
    assert fetched.HasField("accepted_at")
    assert not fetched.HasField("invitation_expires_at")

    with pytest.raises(grpc.RpcError) as raised:
        accept(stub, secret)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND, raised.value.details()


def test_client_resend_too_soon_has_retry_info(server, stub):
    user, _ = invite_and_read_email(stub, server, "grace@example.com")
    with pytest.raises(grpc.RpcError) as raised:
        stub.ResendInvitation(
            usermgmt_pb2.ResendInvitationRequest(account_id=server.account_id, user_id=user.id),
            metadata=server.metadata,
            timeout=CALL_TIMEOUT,
        )
    error = raised.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    retries = unpack_details(status_details(error), error_details_pb2.RetryInfo)
    assert len(retries) == 1, status_details(error)
    delay = retries[0].retry_delay.ToNanoseconds()
    assert 0 < delay <= 60 * 10**9, retries[0]


def test_client_watch_changes_resumes_with_its_cursor(server, stub):
    def watch(start_after=""):
        stream = stub.WatchChanges(
            usermgmt_pb2.WatchChangesRequest(
                account_id=server.account_id, start_after=start_after
            ),
            metadata=server.metadata,
            timeout=CALL_TIMEOUT,
        )
        # The headers come once the stream stands at the account's latest change.
        stream.initial_metadata()
        return stream

    def invite(name, address):
        return stub.InviteUser(
            usermgmt_pb2.InviteUserRequest(
                account_id=server.account_id,
                name=name,
                email=address,
                language=usermgmt_pb2.LANGUAGE_EN,
                role=usermgmt_pb2.ROLE_USERS,
            ),
            metadata=server.metadata,
            timeout=CALL_TIMEOUT,
        ).user

    def next_change(stream):
        # Heartbeats carry no event.
        return next(message for message in stream if message.HasField("event"))

    stream = watch()
    ada = invite("Ada", "ada@example.com")
    first = next_change(stream)
    assert first.cursor
    assert first.event.action == usermgmt_pb2.AUDIT_ACTION_USER_INVITED
    assert first.event.target_user_id == ada.id
    stream.cancel()

    # Changed while nobody watched: the resumed stream starts with it.
    bob = invite("Bob", "bob@example.com")
    resumed = watch(first.cursor)
    second = next_change(resumed)
    assert second.event.target_user_id == bob.id
    assert second.cursor != first.cursor
    resumed.cancel()

    with pytest.raises(grpc.RpcError) as raised:
        next(iter(watch("not a cursor")))
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    requests = unpack_details(status_details(error), error_details_pb2.BadRequest)
    assert [v.field for b in requests for v in b.field_violations] == ["start_after"]
