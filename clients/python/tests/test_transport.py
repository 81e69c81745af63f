"""sessiond.Client's own HTTP/1.1 pool (sessiond._http): keep-alive, stale connections, retries."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sessiond_server import Server

import sessiond
from sessiond import Client


class FakeServer:
    """A listener that answers each connection's requests with ``plan(conn_no, req_no)``:
    ``"ok"`` (200, kept alive), or ``"drop"`` (read the request, close without an answer)."""

    def __init__(self, plan):
        self.plan = plan
        self.requests: list[tuple[int, str]] = []  # (connection number, request line)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        host, port = self.sock.getsockname()
        self.addr = f"{host}:{port}"
        self.conns = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(c, self.conns), daemon=True).start()

    def _serve(self, c: socket.socket, n: int):
        f = c.makefile("rb")
        k = 0
        with c:
            while True:
                line = f.readline()
                if not line:
                    return
                length = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    if h.lower().startswith(b"content-length:"):
                        length = int(h.split(b":")[1])
                f.read(length)
                k += 1
                self.requests.append((n, line.decode().strip()))
                if self.plan(n, k) == "drop":
                    return
                body = b'{"status":"ok"}'
                c.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body)
                )

    def close(self):
        self.sock.close()


def test_connections_are_kept_alive(server):
    with Client(server.url) as c:
        s = c.create()
        for _ in range(20):
            c.patch(s.id, {"n": "1"})
            c.get(s.id)
        assert c._pool._open == 1, "one connection for one thread's requests"


def test_an_idle_connection_sessiond_closed_is_not_reused():
    with Server("--set", "header_timeout=0.2") as srv, Client(srv.url) as c:
        s = c.create()
        time.sleep(0.6)  # sessiond closes the idle keep-alive connection
        # A POST is not idempotent: it must go on a live connection, not be retried blindly.
        r = c.rotate(s.id)
        time.sleep(0.6)
        c.patch(r.id, {"a": "1"})
        assert c.get(r.id).attributes == {"a": "1"}


def test_a_kept_connection_that_breaks_is_retried_once_only_for_idempotent_methods():
    # The first connection answers one request, then takes the next and closes unanswered.
    fake = FakeServer(lambda conn, req: "drop" if conn == 1 and req == 2 else "ok")
    try:
        with Client(fake.addr, timeout=2) as c:
            assert c.health() == {"status": "ok"}
            assert c.health() == {"status": "ok"}, "GET retried on a new connection"
            assert [r[0] for r in fake.requests] == [1, 1, 2]
    finally:
        fake.close()
    fake = FakeServer(lambda conn, req: "drop" if conn == 1 and req == 2 else "ok")
    try:
        with Client(fake.addr, timeout=2) as c:
            c.health()
            with pytest.raises(sessiond.ConnectFailed) as e:
                c.touch("some-session-id")  # POST: it may have been processed, so not sent again
            assert fake.addr in str(e.value) and "POST /v1/sessions/some-session-id/touch" in str(e.value)
            assert [r for r in fake.requests if r[1].startswith("POST")] == [
                (1, "POST /v1/sessions/some-session-id/touch HTTP/1.1")
            ]
    finally:
        fake.close()


def test_a_new_connection_that_breaks_is_not_retried():
    fake = FakeServer(lambda conn, req: "drop")
    try:
        with Client(fake.addr, timeout=2) as c:
            with pytest.raises(sessiond.ConnectFailed):
                c.health()
            assert len(fake.requests) == 1
    finally:
        fake.close()


def test_threads_share_one_client(server):
    errors: list[BaseException] = []
    with Client(server.url, max_connections=4) as c:

        def work():
            try:
                for _ in range(25):
                    s = c.create({"t": threading.current_thread().name})
                    c.patch(s.id, {"n": "2"})
                    assert c.get(s.id).attributes["n"] == "2"
                    c.delete(s.id)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        ts = [threading.Thread(target=work) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors
        assert c._pool._open <= 4


def test_header_injection_is_refused(client):
    with pytest.raises(ValueError):
        client.patch("x" * 20, {"a": "b"}, if_match='"1"\r\nX-Evil: 1')
    with pytest.raises(ValueError):
        client.current("id\r\nX-Evil: 1")


def test_timeout_tuple_and_read_timeout():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        host, port = sock.getsockname()
        addr = f"{host}:{port}"
        with Client(addr, timeout=(1.0, 0.2)) as c:
            t = time.monotonic()
            with pytest.raises(sessiond.Timeout) as e:
                c.get("whatever1234")
            assert time.monotonic() - t < 1.0
    assert addr in str(e.value) and "GET /v1/sessions/whatever1234" in str(e.value)
