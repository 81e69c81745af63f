"""sessiond.Client and sessiond.AsyncClient against the real server."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from sessiond_server import Server

import sessiond
from sessiond import AsyncClient, Client


def test_create_get_patch_delete(client: Client):
    s = client.create()
    assert s.id and s.new is True
    client.patch(s.id, {"user": "alice", "blob": b"\xff\x00\x01"})
    got = client.get(s.id)
    assert got.attributes == {"user": "alice", "blob": b"\xff\x00\x01"}
    client.patch(s.id, {"cart": "3", "user": None})
    assert client.get(s.id, touch=False).attributes == {"cart": "3", "blob": b"\xff\x00\x01"}
    assert client.exists(s.id) is True
    client.delete(s.id)
    assert client.exists(s.id) is False
    with pytest.raises(sessiond.SessionNotFound) as e:
        client.get(s.id)
    assert e.value.status == 404 and e.value.code == "session_not_found"
    assert client.delete(s.id, missing_ok=True) is False


def test_raw_attributes_and_rotate(client: Client):
    s = client.create()
    client.put_attribute(s.id, "photo", b"\x00\xffbytes")
    assert client.get_attribute(s.id, "photo") == b"\x00\xffbytes"
    with pytest.raises(sessiond.AttributeNotFound):
        client.get_attribute(s.id, "nope")
    client.delete_attribute(s.id, "photo")
    client.delete_attribute(s.id, "photo")  # absent: still 204
    client.put_attribute(s.id, "a/b c", "slash and space")
    assert client.get(s.id).attributes == {"a/b c": "slash and space"}
    r = client.rotate(s.id)
    assert r.id != s.id
    assert client.exists(s.id) is False
    assert client.get(r.id).attributes == {"a/b c": "slash and space"}
    client.delete(r.id)


def test_typed_errors(client: Client):
    s = client.create()
    with pytest.raises(sessiond.InvalidName):
        client.put_attribute(s.id, "x" * 200, "v")
    with pytest.raises(sessiond.ValueTooLarge):
        client.put_attribute(s.id, "big", b"x" * 70000)
    with pytest.raises(sessiond.UnknownContext):
        client.create(context="no-such-context")
    with pytest.raises(sessiond.BadLimit):
        client.list_sessions(limit=0)
    with pytest.raises(sessiond.SessionNotFound):
        client.patch("forged-id-0000000000000000", {"a": "b"})
    # every error is also a SessiondError, and 4xx ones an APIError with the code
    assert issubclass(sessiond.PreconditionFailed, sessiond.APIError)
    client.delete(s.id)


def test_listing_and_contexts(client: Client):
    ids = {client.create().id for _ in range(3)}
    seen = {s.id for s in client.iter_sessions(limit=2)}
    assert ids <= seen
    assert any(c["name"] == "default" for c in client.contexts())
    assert client.health()["status"] == "ok"
    for i in ids:
        client.delete(i)


def test_current_session(client: Client):
    s = client.current()
    again = client.current(s.id)
    assert again.id == s.id
    client.delete(s.id)


def test_connect_failure_names_the_address():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    addr = f"127.0.0.1:{port}"
    with Client(addr, timeout=2) as c:
        with pytest.raises(sessiond.ConnectFailed) as e:
            c.get("whatever1234")
    assert addr in str(e.value) and e.value.address == addr
    assert isinstance(e.value, sessiond.Unavailable)


def test_timeout_names_the_address():
    # A listener that accepts and never answers.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        host, port = sock.getsockname()
        addr = f"{host}:{port}"
        with Client(addr, timeout=0.3) as c:
            with pytest.raises(sessiond.Timeout) as e:
                c.create()
    assert addr in str(e.value)


def test_unix_socket_and_token(tmp_path):
    path = tmp_path / "http.sock"
    with Server(listen=f"unix:{path}", token="s3cret-token") as srv:
        assert srv.url == f"unix:{path}"
        with Client(srv.url, token_file=srv.token_file) as c:
            s = c.create()
            c.patch(s.id, {"k": "v"})
            assert c.get(s.id).attributes == {"k": "v"}
        with Client(srv.url, token="wrong") as bad:
            with pytest.raises(sessiond.Unauthorized):
                bad.create()


async def test_async_client(server):
    async with AsyncClient(server.url) as c:
        s = await c.create()
        await c.patch(s.id, {"a": "1"})
        await c.patch(s.id, {"b": "2"})
        got = await c.get(s.id)
        assert got.attributes == {"a": "1", "b": "2"}
        r = await c.rotate(s.id)
        assert not await c.exists(s.id)
        ids = [x.id async for x in c.iter_sessions()]
        assert r.id in ids
        await c.delete(r.id)
        with pytest.raises(sessiond.SessionNotFound):
            await c.get(r.id)


# ---- issue 16's session model (ETag, touch, timeouts, principals) ----


def test_create_with_attributes_and_fields(client: Client):
    deadline = datetime.now(UTC) + timedelta(seconds=600)
    s = client.create({"x": "1"}, timeout=120, principal="carol")
    assert s.attributes == {"x": "1"}
    assert s.timeout == 120 and s.timeout_override == 120 and s.principal == "carol"
    client.patch(s.id, deadline=deadline, timeout=None)
    g = client.get(s.id)
    assert g.deadline is not None and abs((g.deadline - deadline).total_seconds()) < 1
    with pytest.raises(sessiond.BadTimeout):
        client.patch(s.id, timeout=10**9)
    with pytest.raises(sessiond.BadDeadline):
        client.patch(s.id, deadline=datetime.now(UTC) - timedelta(seconds=5))
    with pytest.raises(sessiond.BadPrincipal):
        client.patch(s.id, principal="bad\nname")
    client.delete(s.id)


def test_etags_and_conditional_requests(client: Client):
    s = client.create({"a": "1"})
    assert s.etag
    g = client.get(s.id)
    assert g.etag == s.etag
    assert client.get(s.id, if_none_match=g.etag) is None  # 304
    client.touch(s.id)
    assert client.get(s.id).etag == s.etag  # a touch is no change
    e2 = client.patch(s.id, {"a": "2"}, if_match=s.etag)
    assert e2 and e2 != s.etag
    with pytest.raises(sessiond.PreconditionFailed):
        client.patch(s.id, {"a": "3"}, if_match=s.etag)
    with pytest.raises(sessiond.PreconditionFailed):
        client.delete(s.id, if_match=s.etag)
    client.delete(s.id, if_match=e2)


def test_touch_clears_new(client: Client):
    s = client.create()
    assert client.get(s.id, touch=False).new is True
    client.touch(s.id)
    assert client.get(s.id, touch=False).new is False
    client.delete(s.id)
    with pytest.raises(sessiond.SessionNotFound):
        client.touch(s.id)


def test_principals(client: Client):
    a = client.create(principal="dave")
    b = client.create()
    client.patch(b.id, principal="dave")
    listed = {s.id for s in client.iter_principal_sessions("dave")}
    assert listed == {a.id, b.id}
    assert client.delete_principal_sessions("dave") == 2
    assert not client.exists(a.id) and not client.exists(b.id)
    assert client.delete_principal_sessions("dave") == 0
