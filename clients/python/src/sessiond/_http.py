"""A small blocking HTTP/1.1 client for :class:`sessiond.Client`: keep-alive connections in a pool.

sessiond's API is a handful of small requests and answers over one address, so this
speaks just enough HTTP/1.1 for it on a plain socket (TCP, TLS or a unix socket):
a request is one ``sendall``; an answer is a status line, headers, and a body of
``Content-Length`` bytes, chunks, or up to the close. That costs a fraction of a
general-purpose client's CPU per request (``docs/benchmarks.md``, "Framework adapters").

Connections are kept alive and reused, last used first, by any thread (a pool with a
lock). One that sessiond closed while it sat idle (its ``header_timeout``) is seen
before reuse and dropped. A kept connection that fails on the next request is retried
once on a new connection only when the request cannot have been processed (the send
itself failed), or when the method is idempotent; otherwise the error is raised. A
failure to connect, a timeout or a broken answer raises :class:`TransportError`, which
the client turns into :class:`sessiond.ConnectFailed` / :class:`sessiond.Timeout`
naming the address.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

#: Methods whose repetition has the effect of one (RFC 9110 §9.2.2): retried once on a
#: kept connection that broke before any answer.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

#: A connection idle longer than this is closed rather than reused (sessiond closes idle
#: connections after its ``header_timeout``, 10 s by default).
KEEPALIVE_EXPIRY = 5.0

_MAX_HEAD = 65536  # bytes of an answer's status line and headers
#: Bytes of an answer's body: above the largest answer sessiond gives (a listing page
#: of 1,000 sessions, a session of its largest values), so a broken peer cannot make
#: the client buffer without bound.
_MAX_BODY = 256 * 1024 * 1024
_RECV = 65536


class TransportError(Exception):
    """The request got no (complete) answer; ``timeout`` when a time limit ran out."""

    def __init__(self, message: str, *, timeout: bool = False):
        super().__init__(message)
        self.timeout = timeout


class _NotSent(Exception):
    """A kept connection failed while the request was being sent: nothing was processed."""


class _NoAnswer(Exception):
    """A kept connection closed or reset before the first byte of an answer."""


class Response:
    """An answer: ``status_code``, ``headers`` (lower-case names), ``content``."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _timeouts(timeout: Any) -> tuple[float | None, float | None]:
    """``(connect, read)`` seconds from a number, a pair, or an object with ``connect``/``read``
    (``httpx.Timeout``)."""
    if timeout is None or isinstance(timeout, int | float):
        return timeout, timeout
    if isinstance(timeout, tuple):
        connect, read = timeout
        return connect, read
    return getattr(timeout, "connect", None), getattr(timeout, "read", None)


class _Conn:
    __slots__ = ("sock", "buf", "poller", "idle_since", "used")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""  # received, not yet parsed
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.idle_since = 0.0
        self.used = False  # has answered a request: a failure may be a stale keep-alive

    def close(self) -> None:
        self.sock.close()

    def closed_by_peer(self) -> bool:
        """Whether the idle connection became readable: closed by sessiond (or something
        unasked arrived), so not reusable."""
        if self.buf:
            return True
        try:
            return bool(self.poller.poll(0))
        except OSError:
            return True

    def fill(self) -> bool:
        """Receives more; False at the end of the stream."""
        chunk = self.sock.recv(_RECV)
        if not chunk:
            return False
        self.buf = self.buf + chunk if self.buf else chunk
        return True

    def take(self, n: int) -> bytes:
        """Exactly ``n`` bytes."""
        while len(self.buf) < n:
            if not self.fill():
                raise ConnectionError(f"sessiond closed the connection {n - len(self.buf)} bytes short")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def line(self) -> bytes:
        """One line without its CRLF."""
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 2 :]
                return out
            if len(self.buf) > _MAX_HEAD:
                raise ValueError("answer line too long")
            if not self.fill():
                raise ConnectionError("sessiond closed the connection in a chunked body")


_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _after_fork() -> None:
    # A forked child must not share the parent's sockets: it starts with an empty pool.
    for p in list(_pools):
        p._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class Pool:
    """Keep-alive connections to one address; thread-safe.

    ``url``: ``http://host:port[/prefix]``, ``https://…`` or ``unix:/path``. ``timeout``:
    seconds for connecting and for each read (a number, ``(connect, read)``, or an
    ``httpx.Timeout``). At most ``max_connections`` at once (a request beyond that waits
    up to the connect timeout for one); at most ``max_keepalive`` kept idle.
    """

    def __init__(self, url: str, *, timeout: Any = 5.0, max_connections: int = 100, max_keepalive: int = 20):
        self.connect_timeout, self.read_timeout = _timeouts(timeout)
        self.uds: str | None = None
        self.tls = False
        if url.startswith("unix:"):
            self.uds = url[len("unix:") :]
            self.host, self.port, self.prefix = "sessiond", 0, ""
            host_header = "sessiond"
        else:
            u = urlsplit(url if "://" in url else f"http://{url}")
            if u.scheme not in ("http", "https"):
                raise ValueError(f"a sessiond address is http://, https:// or unix:, not {url!r}")
            self.tls = u.scheme == "https"
            self.host = u.hostname or "127.0.0.1"
            self.port = u.port or (443 if self.tls else 80)
            self.prefix = u.path.rstrip("/")
            host_header = u.netloc.rpartition("@")[2]
        self._head_host = f"Host: {host_header}\r\n"
        self.max_connections = max_connections
        self.max_keepalive = max_keepalive
        self._idle: list[_Conn] = []
        self._open = 0
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._ssl: Any = None
        _pools.add(self)

    # ---- connections ----
    def _connect(self) -> _Conn:
        t = self.connect_timeout
        if self.uds is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(t)
                sock.connect(self.uds)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self.host, self.port), timeout=t)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.tls:
                    if self._ssl is None:
                        import ssl

                        self._ssl = ssl.create_default_context()
                    sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        sock.settimeout(self.read_timeout)
        return _Conn(sock)

    def _acquire(self) -> _Conn | None:
        """A kept connection, or None: the caller connects (its slot is already counted)."""
        now = time.monotonic()
        deadline = None if self.connect_timeout is None else now + self.connect_timeout
        with self._cond:
            while True:
                if self._closed:
                    raise TransportError("the client is closed")
                while self._idle:
                    c = self._idle.pop()
                    if now - c.idle_since < KEEPALIVE_EXPIRY and not c.closed_by_peer():
                        return c
                    self._open -= 1
                    c.close()
                if self._open < self.max_connections:
                    self._open += 1
                    return None
                # All connections in use: wait for one, up to the connect timeout.
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TransportError(
                        f"all {self.max_connections} connections busy for {self.connect_timeout} s",
                        timeout=True,
                    )
                self._cond.wait(left)
                now = time.monotonic()

    def _release(self, c: _Conn, keep: bool) -> None:
        with self._cond:
            if keep and not self._closed and len(self._idle) < self.max_keepalive:
                c.idle_since = time.monotonic()
                c.used = True
                self._idle.append(c)
            else:
                self._open -= 1
                c.close()
            self._cond.notify()

    def _drop(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def _forget(self) -> None:
        self._idle = []
        self._open = 0
        self._cond = threading.Condition(threading.Lock())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for c in idle:
            c.close()

    # ---- requests ----
    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        """Sends one request (``target``: path and query, already encoded) and reads its answer."""
        head = self._head(method, target, headers, body)
        data = head + body if body else head
        for attempt in (0, 1):
            c = self._acquire()
            if c is None:
                try:
                    c = self._connect()
                except TimeoutError as e:
                    self._drop()
                    raise TransportError(f"connect timed out ({e or 'timeout'})", timeout=True) from e
                except OSError as e:
                    self._drop()
                    raise TransportError(str(e) or type(e).__name__) from e
            kept = c.used
            try:
                r, keep = self._exchange(c, method, data, kept, bool(body))
            except (_NotSent, _NoAnswer) as e:
                self._release(c, False)
                if attempt == 0 and (isinstance(e, _NotSent) or method in IDEMPOTENT):
                    continue  # a stale keep-alive connection: once more on a new one
                raise TransportError(f"the connection closed before an answer ({e.__cause__ or e})") from e
            except TimeoutError as e:
                self._release(c, False)
                raise TransportError(f"no answer within {self.read_timeout} s", timeout=True) from e
            except (OSError, ValueError) as e:
                self._release(c, False)
                raise TransportError(str(e) or type(e).__name__) from e
            except BaseException:
                self._release(c, False)
                raise
            self._release(c, keep)
            return r
        raise AssertionError("unreachable")  # pragma: no cover

    def _head(self, method: str, target: str, headers: Mapping[str, str] | None, body: bytes | None) -> bytes:
        parts = [f"{method} {self.prefix}{target} HTTP/1.1\r\n", self._head_host]
        if headers:
            for k, v in headers.items():
                if "\r" in v or "\n" in v or "\r" in k or "\n" in k or ":" in k:
                    raise ValueError(f"invalid HTTP header {k!r}: {v!r}")
                parts.append(f"{k}: {v}\r\n")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            parts.append(f"Content-Length: {len(body) if body else 0}\r\n")
        parts.append("\r\n")
        if any(c in target for c in " \r\n"):
            raise ValueError(f"invalid request target {target!r}")
        return "".join(parts).encode("latin-1")

    @staticmethod
    def _exchange(c: _Conn, method: str, data: bytes, kept: bool, has_body: bool) -> tuple[Response, bool]:
        try:
            c.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            if kept:
                raise _NotSent() from e
            raise
        # The head: status line and headers, up to the empty line.
        while True:
            try:
                while (end := c.buf.find(b"\r\n\r\n")) < 0:
                    if len(c.buf) > _MAX_HEAD:
                        raise ValueError("answer head too large")
                    if not c.fill():
                        if kept and not c.buf:
                            raise _NoAnswer("closed")
                        raise ConnectionError("sessiond closed the connection before a whole answer")
            except (ConnectionResetError, ConnectionAbortedError) as e:
                if kept and not c.buf:
                    raise _NoAnswer() from e
                raise
            kept = False  # bytes of an answer arrived: no retry from here on
            head, c.buf = c.buf[:end].decode("latin-1"), c.buf[end + 4 :]
            lines = head.split("\r\n")
            line = lines[0]
            if not line.startswith("HTTP/1.") or len(line) < 12:
                raise ValueError(f"not an HTTP/1.x status line: {line[:80]!r}")
            status = int(line[9:12])
            headers: dict[str, str] = {}
            for h in lines[1:]:
                k, sep, v = h.partition(":")
                if not sep:
                    raise ValueError(f"malformed header line {h[:80]!r}")
                name = k.strip().lower()
                value = v.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            if 100 <= status < 200 and status != 101:
                continue  # an interim answer (100 Continue): the real one follows
            break
        keep = line.startswith("HTTP/1.1") and "close" not in headers.get("connection", "").lower()
        if status >= 400 and has_body:
            # An early error answer (413, 400, ...) may come before sessiond read the whole
            # body; it then closes the connection, without saying so: not reused.
            keep = False
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = _read_chunked(c)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if n < 0 or n > _MAX_BODY:
                raise ValueError(f"content-length {n} is outside 0..{_MAX_BODY}")
            body = c.take(n) if n else b""
        else:
            while c.fill():
                if len(c.buf) > _MAX_BODY:
                    raise ValueError(f"answer body over {_MAX_BODY} bytes")
            body, c.buf = c.buf, b""
            keep = False
        return Response(status, headers, body), keep


def _read_chunked(c: _Conn) -> bytes:
    out = []
    total = 0
    while True:
        n = int(c.line().split(b";", 1)[0].strip(), 16)
        total += n
        if total > _MAX_BODY:
            raise ValueError(f"chunked answer body over {_MAX_BODY} bytes")
        if n == 0:
            while c.line():
                pass  # trailers, up to the empty line
            return b"".join(out)
        out.append(c.take(n))
        if c.take(2) != b"\r\n":
            raise ValueError("malformed chunked body")
