"""Sync and async clients for sessiond's HTTP API (the private listener).

Both clients build the same requests (:class:`_Api`) and read the same answers;
only the sending differs: :class:`Client` over the package's own keep-alive
HTTP/1.1 pool (:mod:`sessiond._http`, the standard library only),
:class:`AsyncClient` over httpx. An address is ``http://host:port``, ``host:port`` or
``unix:/path/to/http.sock``. A request that cannot connect or times out raises
:class:`~sessiond.errors.ConnectFailed` / :class:`~sessiond.errors.Timeout`
naming the address; an error answer raises the typed exception of its code.
"""

from __future__ import annotations

import base64
import json as _json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from . import _http, errors

if TYPE_CHECKING:
    import httpx

#: Value of a keyword argument that was not given (``None`` means "send null").
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET", "__bool__": lambda self: False})()

Value = str | bytes


def encode_value(v: Value) -> Any:
    """A value as PATCH/create JSON: text as a string, other bytes as ``{"base64": ...}``."""
    if isinstance(v, str):
        return v
    if isinstance(v, bytes | bytearray | memoryview):
        b = bytes(v)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(b).decode("ascii")}
    raise TypeError(f"a session value is str or bytes, not {type(v).__name__}")


def decode_value(v: Any) -> Value:
    """A value from session JSON: a string stays a ``str``, ``{"base64": ...}`` becomes ``bytes``."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("base64"), str):
        return base64.b64decode(v["base64"])
    raise ValueError(f"unexpected attribute value in session JSON: {v!r}")


def _time(v: Any) -> datetime | None:
    if not v:
        return None
    return datetime.fromisoformat(v.replace("Z", "+00:00"))


@dataclass
class Session:
    """A session as sessiond returns it, with the ETag of that version."""

    id: str
    context: str = "default"
    created_at: datetime | None = None
    last_accessed_at: datetime | None = None
    expires_at: datetime | None = None
    timeout: int | None = None
    timeout_override: int | None = None
    deadline: datetime | None = None
    principal: str | None = None
    new: bool = False
    attributes: dict[str, Value] = field(default_factory=dict)
    etag: str | None = None

    @classmethod
    def from_json(cls, o: Mapping[str, Any], etag: str | None = None) -> Session:
        return cls(
            id=o["id"],
            context=o.get("context", "default"),
            created_at=_time(o.get("created_at")),
            last_accessed_at=_time(o.get("last_accessed_at")),
            expires_at=_time(o.get("expires_at")),
            timeout=o.get("timeout"),
            timeout_override=o.get("timeout_override"),
            deadline=_time(o.get("deadline")),
            principal=o.get("principal"),
            new=bool(o.get("new", False)),
            attributes={k: decode_value(v) for k, v in (o.get("attributes") or {}).items()},
            etag=etag,
        )


@dataclass
class Page:
    """One page of a listing; ``next_cursor`` is None on the last page."""

    sessions: list[Session]
    next_cursor: str | None


def _deadline_json(d: datetime | str | None) -> str | None:
    if d is None or isinstance(d, str):
        return d
    if d.tzinfo is None:
        raise ValueError("a deadline must be timezone-aware")
    return d.isoformat()


def _body(attributes, timeout, deadline, principal) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if attributes is not None and attributes is not UNSET:
        body["attributes"] = {k: (None if v is None else encode_value(v)) for k, v in attributes.items()}
    if timeout is not UNSET:
        body["timeout"] = timeout
    if deadline is not UNSET:
        body["deadline"] = _deadline_json(deadline)
    if principal is not UNSET:
        body["principal"] = principal
    return body


def _q(segment: str) -> str:
    return quote(segment, safe="")


#: An answer: :class:`sessiond._http.Response` (Client) or ``httpx.Response`` (AsyncClient);
#: both have ``status_code``, ``headers.get``, ``content``, ``text`` and ``json()``.
_Answer = Any


class _Request:
    """One request to send, and how to read its answer."""

    __slots__ = ("method", "path", "params", "headers", "json", "content", "read")

    def __init__(self, method, path, read, *, params=None, headers=None, json=None, content=None):
        self.method = method
        self.path = path
        self.read = read
        self.params = params
        self.headers = headers
        self.json = json
        self.content = content


def _cond(if_match: str | None) -> dict[str, str] | None:
    return {"If-Match": if_match} if if_match else None


class _Api:
    """Builds requests and reads answers; shared by :class:`Client` and :class:`AsyncClient`."""

    def __init__(self, url: str, token: str | None, token_file: str | Path | None, context: str | None):
        if token is None and token_file is not None:
            token = Path(token_file).read_text(encoding="ascii").removesuffix("\n")
        self.address = url
        self.context = context
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        if url.startswith("unix:"):
            self.uds: str | None = url[len("unix:") :]
            self.base_url = "http://sessiond"
        else:
            self.uds = None
            self.base_url = url if "://" in url else f"http://{url}"
        self.base_url = self.base_url.rstrip("/")

    # ---- answers ----
    def check(self, r: _Answer, ok: tuple[int, ...] = (200, 201, 204)) -> _Answer:
        if r.status_code in ok:
            return r
        code, message = "", r.text[:500]
        try:
            o = r.json()
            code, message = str(o.get("error", "")), str(o.get("message", ""))
        except (ValueError, AttributeError):
            pass
        raise errors.error_for(r.status_code, code, message, self.address)

    def _ctx(self, context: str | None) -> dict[str, str] | None:
        c = context or self.context
        return {"context": c} if c else None

    def session(self, r: _Answer) -> Session:
        return Session.from_json(self.check(r).json(), r.headers.get("etag"))

    def etag(self, r: _Answer) -> str | None:
        return self.check(r).headers.get("etag")

    def none(self, r: _Answer) -> None:
        self.check(r)

    def page(self, r: _Answer) -> Page:
        o = self.check(r).json()
        return Page([Session.from_json(s) for s in o.get("sessions", [])], o.get("next_cursor"))

    # ---- requests ----
    def create(self, attributes=None, *, timeout=UNSET, deadline=UNSET, principal=UNSET, context=None):
        body = _body(attributes, timeout, deadline, principal)
        return _Request("POST", "/v1/sessions", self.session, params=self._ctx(context), json=body or None)

    def get(self, sid: str, *, touch: bool = True, if_none_match: str | None = None):
        def read(r: _Answer) -> Session | None:
            if r.status_code == 304:
                return None
            return self.session(r)

        return _Request(
            "GET",
            f"/v1/sessions/{_q(sid)}",
            read,
            params=None if touch else {"touch": "false"},
            headers={"If-None-Match": if_none_match} if if_none_match else None,
        )

    def exists(self, sid: str):
        def read(r: _Answer) -> bool:
            if r.status_code == 404:
                try:
                    if r.json().get("error") == "session_not_found":
                        return False
                except ValueError:
                    pass
            self.check(r)
            return True

        return _Request("GET", f"/v1/sessions/{_q(sid)}", read, params={"touch": "false"})

    def patch(self, sid, attributes=None, *, timeout=UNSET, deadline=UNSET, principal=UNSET, if_match=None):
        body = _body(attributes if attributes is not None else {}, timeout, deadline, principal)
        return _Request("PATCH", f"/v1/sessions/{_q(sid)}", self.etag, headers=_cond(if_match), json=body)

    def touch(self, sid: str):
        return _Request("POST", f"/v1/sessions/{_q(sid)}/touch", self.none)

    def delete(self, sid: str, *, if_match: str | None = None, missing_ok: bool = False):
        def read(r: _Answer) -> bool:
            if missing_ok and r.status_code == 404:
                try:
                    if r.json().get("error") == "session_not_found":
                        return False
                except ValueError:
                    pass
            self.check(r)
            return True

        return _Request("DELETE", f"/v1/sessions/{_q(sid)}", read, headers=_cond(if_match))

    def rotate(self, sid: str, *, if_match: str | None = None):
        return _Request("POST", f"/v1/sessions/{_q(sid)}/rotate", self.session, headers=_cond(if_match))

    def get_attribute(self, sid: str, name: str, *, touch: bool = True):
        return _Request(
            "GET",
            f"/v1/sessions/{_q(sid)}/attributes/{_q(name)}",
            lambda r: self.check(r).content,
            params=None if touch else {"touch": "false"},
        )

    def put_attribute(self, sid: str, name: str, value: Value, *, if_match: str | None = None):
        content = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return _Request(
            "PUT",
            f"/v1/sessions/{_q(sid)}/attributes/{_q(name)}",
            self.etag,
            headers=_cond(if_match),
            content=content,
        )

    def delete_attribute(self, sid: str, name: str, *, if_match: str | None = None):
        return _Request(
            "DELETE", f"/v1/sessions/{_q(sid)}/attributes/{_q(name)}", self.etag, headers=_cond(if_match)
        )

    def list_sessions(self, *, context=None, limit: int | None = None, cursor: str | None = None):
        params = dict(self._ctx(context) or {})
        if limit is not None:
            params["limit"] = str(limit)
        if cursor is not None:
            params["cursor"] = cursor
        return _Request("GET", "/v1/sessions", self.page, params=params or None)

    def principal_sessions(self, name: str, *, limit: int | None = None, cursor: str | None = None):
        params = {}
        if limit is not None:
            params["limit"] = str(limit)
        if cursor is not None:
            params["cursor"] = cursor
        return _Request("GET", f"/v1/principals/{_q(name)}/sessions", self.page, params=params or None)

    def delete_principal_sessions(self, name: str):
        return _Request(
            "DELETE",
            f"/v1/principals/{_q(name)}/sessions",
            lambda r: int(self.check(r).json().get("invalidated", 0)),
        )

    def current(self, sid: str | None = None, *, context=None):
        """``POST /v1/session``: the session ``sid`` names if live, else a new one."""
        return _Request(
            "POST",
            "/v1/session",
            self.session,
            params=self._ctx(context),
            headers={"X-Session-Id": sid} if sid else None,
        )

    def contexts(self):
        return _Request("GET", "/v1/contexts", lambda r: self.check(r).json()["contexts"])

    def health(self):
        return _Request("GET", "/healthz", lambda r: self.check(r).json())

    def unavailable(self, req: _Request, detail: Any, timeout: bool) -> errors.Unavailable:
        """The error for a request that got no answer: it names the address and the request."""
        what = f"{req.method} {req.path}"
        if timeout:
            return errors.Timeout(
                f"sessiond at {self.address} did not answer {what} in time: {detail}", self.address
            )
        return errors.ConnectFailed(
            f"cannot reach sessiond at {self.address} for {what}: {detail}", self.address
        )

    def transport_error(self, e: Exception, req: _Request) -> errors.Unavailable:
        import httpx

        return self.unavailable(req, e or type(e).__name__, isinstance(e, httpx.TimeoutException))


_OPS = (
    "create",
    "get",
    "exists",
    "patch",
    "touch",
    "delete",
    "rotate",
    "get_attribute",
    "put_attribute",
    "delete_attribute",
    "list_sessions",
    "principal_sessions",
    "delete_principal_sessions",
    "current",
    "contexts",
    "health",
)


def _timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    import httpx

    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)


_JSON_HEADERS = {"Content-Type": "application/json"}
_BYTES_HEADERS = {"Content-Type": "application/octet-stream"}


class Client:
    """Blocking client with a keep-alive connection pool, safe to share between threads.

    >>> c = Client("127.0.0.1:8080")               # or "unix:/run/sessiond/http.sock"
    >>> s = c.create({"user": "alice"})
    >>> c.patch(s.id, {"cart": "3 items", "user": None})

    Methods: ``create``, ``get`` (``touch=False`` peeks; ``if_none_match`` gives
    None on 304), ``exists``, ``patch``, ``touch``, ``delete``, ``rotate``,
    ``get_attribute``, ``put_attribute``, ``delete_attribute``, ``list_sessions``
    / ``iter_sessions``, ``principal_sessions`` / ``iter_principal_sessions``,
    ``delete_principal_sessions``, ``current``, ``contexts``, ``health``.

    ``timeout`` is the seconds allowed to connect and for each read: a number,
    ``(connect, read)``, or an ``httpx.Timeout``. ``max_connections`` caps the
    connections open at once; up to 20 idle ones are kept.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        token_file: str | Path | None = None,
        context: str | None = None,
        timeout: float | tuple[float, float] | httpx.Timeout = 5.0,
        max_connections: int = 100,
    ):
        self._api = _Api(url, token, token_file, context)
        self._pool = _http.Pool(
            url, timeout=timeout, max_connections=max_connections, max_keepalive=min(20, max_connections)
        )
        self._auth = self._api.headers

    @property
    def address(self) -> str:
        return self._api.address

    def _send(self, req: _Request):
        target = req.path
        if req.params:
            target = f"{target}?{urlencode(req.params)}"
        headers = self._auth
        body = None
        if req.json is not None:
            body = _json.dumps(req.json, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers = {**headers, **_JSON_HEADERS}
        elif req.content is not None:
            body = req.content
            headers = {**headers, **_BYTES_HEADERS}
        if req.headers:
            headers = {**headers, **req.headers}
        try:
            r = self._pool.request(req.method, target, headers, body)
        except _http.TransportError as e:
            raise self._api.unavailable(req, e, e.timeout) from e
        return req.read(r)

    def iter_sessions(self, *, context: str | None = None, limit: int = 1000) -> Iterator[Session]:
        cursor = None
        while True:
            page = self.list_sessions(context=context, limit=limit, cursor=cursor)
            yield from page.sessions
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def iter_principal_sessions(self, name: str, *, limit: int = 1000) -> Iterator[Session]:
        cursor = None
        while True:
            page = self.principal_sessions(name, limit=limit, cursor=cursor)
            yield from page.sessions
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same methods, each a coroutine."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        token_file: str | Path | None = None,
        context: str | None = None,
        timeout: float | httpx.Timeout = 5.0,
        max_connections: int = 100,
    ):
        import httpx

        self._api = _Api(url, token, token_file, context)
        transport = httpx.AsyncHTTPTransport(
            uds=self._api.uds,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
        )
        self._http = httpx.AsyncClient(
            base_url=self._api.base_url,
            headers=self._api.headers,
            timeout=_timeout(timeout),
            transport=transport,
        )

    @property
    def address(self) -> str:
        return self._api.address

    async def _send(self, req: _Request):
        import httpx

        try:
            r = await self._http.request(
                req.method,
                req.path,
                params=req.params,
                headers=req.headers,
                json=req.json,
                content=req.content,
            )
        except httpx.TransportError as e:
            raise self._api.transport_error(e, req) from e
        return req.read(r)

    async def iter_sessions(self, *, context: str | None = None, limit: int = 1000) -> AsyncIterator[Session]:
        cursor = None
        while True:
            page = await self.list_sessions(context=context, limit=limit, cursor=cursor)
            for s in page.sessions:
                yield s
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def iter_principal_sessions(self, name: str, *, limit: int = 1000) -> AsyncIterator[Session]:
        cursor = None
        while True:
            page = await self.principal_sessions(name, limit=limit, cursor=cursor)
            for s in page.sessions:
                yield s
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def _install(cls: type, is_async: bool) -> None:
    """Gives ``cls`` one method per operation of :class:`_Api`, with its signature and doc."""
    import functools

    for name in _OPS:
        build = getattr(_Api, name)
        if is_async:

            async def op(self, *a, _build=build, **kw):
                return await self._send(_build(self._api, *a, **kw))
        else:

            def op(self, *a, _build=build, **kw):
                return self._send(_build(self._api, *a, **kw))

        functools.update_wrapper(op, build)
        op.__qualname__ = f"{cls.__name__}.{name}"
        setattr(cls, name, op)


_install(Client, False)
_install(AsyncClient, True)

__all__ = ["AsyncClient", "Client", "Page", "Session", "UNSET", "decode_value", "encode_value"]
