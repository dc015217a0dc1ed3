"""Interop tests: a real `usermgmt` server, called with grpcurl and with a Python client.

Run through `tests/interop/run.sh`, which sets:
- USERMGMT_BIN: the `usermgmt` binary under test;
- USERMGMT_STUBS_DIR: Python stubs generated from proto/ by grpc_tools.protoc;
- GRPCURL: the grpcurl binary.

Every test gets its own server on its own SQLite database, started on a port the kernel
picks; the fixture learns the address from the server's JSON log.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run these tests through tests/interop/run.sh")
    return value


USERMGMT_BIN = _required_env("USERMGMT_BIN")
GRPCURL = _required_env("GRPCURL")
sys.path.insert(0, _required_env("USERMGMT_STUBS_DIR"))

from usermgmt.v1 import usermgmt_pb2, usermgmt_pb2_grpc  # noqa: E402

SERVICE = "usermgmt.v1.UserManagement"
HEALTH = "grpc.health.v1.Health"
ADMIN_EMAIL = "admin@example.com"

STARTUP_TIMEOUT = 30.0  # seconds to wait for the "gRPC server listening" log line
READY_TIMEOUT = 10.0  # seconds to wait for the health check to answer SERVING
SHUTDOWN_TIMEOUT = 30.0  # seconds to wait for the server to exit after SIGTERM
CALL_TIMEOUT = 10.0  # seconds for any one RPC or grpcurl run

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
        [USERMGMT_BIN, "bootstrap", "--account-name", "Interop", "--admin-email", ADMIN_EMAIL],
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
    return check(b"", timeout=1.0) == b"\x08\x01"


def _wait_until_serving(addr: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last_error: Exception | None = None
    with grpc.insecure_channel(addr) as channel:
        while time.monotonic() < deadline:
            try:
                if _is_serving(channel):
                    return
            except grpc.RpcError as error:
                last_error = error
            time.sleep(0.05)
    pytest.fail(
        f"the health check did not answer SERVING within {READY_TIMEOUT:.0f} s: {last_error}"
    )


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
        _wait_until_serving(addr)
        yield Server(
            addr=addr,
            account_id=created["account_id"],
            admin_user_id=created["user_id"],
            token=created["api_token"],
            log=log,
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


def grpcurl(server: Server, *args: str, data: dict | None = None, auth: bool = True):
    command = [GRPCURL, "-plaintext"]
    if auth:
        command += ["-H", f"authorization: APIKey {server.token}"]
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
    assert HEALTH in services


def test_grpcurl_describe_service(server):
    description = grpcurl_ok(server, "describe", SERVICE, auth=False)
    for rpc in ("InviteUser", "GetUser", "ListUsers"):
        assert rpc in description


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


# --------------------------------------------------------------------------------------
# Generated Python client
# --------------------------------------------------------------------------------------


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.addr) as channel:
        yield usermgmt_pb2_grpc.UserManagementStub(channel)


def invite(stub, server: Server, name: str, email: str) -> usermgmt_pb2.User:
    request = usermgmt_pb2.InviteUserRequest(
        account_id=server.account_id,
        name=name,
        email=email,
        language=usermgmt_pb2.LANGUAGE_EN,
        role=usermgmt_pb2.ROLE_USERS,
    )
    return stub.InviteUser(request, metadata=server.metadata, timeout=CALL_TIMEOUT).user


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

    fetched = stub.GetUser(
        usermgmt_pb2.GetUserRequest(account_id=server.account_id, user_id=user.id),
        metadata=server.metadata,
        timeout=CALL_TIMEOUT,
    ).user
    assert fetched.id == user.id
    assert fetched.email == "grace.hopper@example.com"
    assert fetched.name == "Grace Hopper"
    assert fetched.status == usermgmt_pb2.USER_STATUS_INVITED


def test_client_invite_twice_is_already_exists(server, stub):
    invite(stub, server, "Grace Hopper", "grace@example.com")
    with pytest.raises(grpc.RpcError) as raised:
        invite(stub, server, "Grace Hopper", "grace@example.com")
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS, raised.value.details()


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
    for i, email in enumerate(emails, start=1):
        invite(stub, server, f"User {i}", email)

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
