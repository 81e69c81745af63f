"""Django session engine backed by sessiond: ``SESSION_ENGINE = "sessiond.django"``.

Settings:

``SESSIOND_URL``
    ``http://127.0.0.1:8080`` (default), ``host:port`` or ``unix:/run/sessiond/http.sock``.
``SESSIOND_CONTEXT``
    The sessiond context new sessions go to (default: sessiond's ``default``).
``SESSIOND_TOKEN_FILE``
    File holding the bearer token of sessiond's ``api_token_file``.
``SESSIOND_TIMEOUT``
    Seconds a call to sessiond may take (default 5).
``SESSIOND_IF_MATCH``
    ``True``: ``save()`` sends ``If-Match`` with the version it loaded, and raises
    :class:`sessiond.PreconditionFailed` when another request changed the session
    in between. ``False`` (default): ``save()`` merges, see below.
``SESSIOND_PRINCIPAL``
    A callable (or its dotted path) ``user -> str`` naming the principal a login
    sets on the session; default ``user.get_username()``.

Mapping (each a single call to sessiond):

- ``create()`` is one ``POST /v1/sessions`` carrying the data: sessiond picks the key.
- ``load()`` is ``GET``; a missing or expired key loads an empty session and creates nothing.
- ``save()`` is one ``PATCH`` of only the keys whose value changed since load (removed keys
  as ``null``), so two concurrent requests that change different keys both keep their change.
  A save that changes nothing is a ``touch``.
- ``cycle_key()`` is ``rotate``; ``delete()`` and ``flush()`` are ``DELETE``.
- ``set_expiry()`` maps to the session's own idle ``timeout`` (seconds) or ``deadline``
  (a datetime or timedelta); an expiry already past ends the session.
- ``clear_expired()`` does nothing: sessiond reaps.

Each Django session key is one sessiond attribute, its value serialized with
``SESSION_SERIALIZER``: size the context's ``max_values_per_session`` and
``max_name_size`` for the keys your application uses. A network error is raised
(:class:`sessiond.Unavailable`), never taken for an empty session.
"""

from __future__ import annotations

import asyncio
import math
import threading
import weakref
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .. import errors
from ..client import UNSET, AsyncClient, Client

__all__ = ["SessionStore", "alogout_everywhere", "logout_everywhere", "principal_for"]

EXPIRY_KEY = "_session_expiry"

# ---- clients, one per settings (sync) and per event loop (async) ----
# The settings are read once and kept until Django's setting_changed names a SESSIOND_ one
# (override_settings sends it): every load and save asks for the client, and reading four
# settings through Django's lazy settings object each time is a measurable share of a request.
_lock = threading.Lock()
_sync: dict[tuple, Client] = {}
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, AsyncClient]] = (
    weakref.WeakKeyDictionary()
)
_current: Client | None = None  # the sync client of the current settings
_cfg: tuple | None = None
_if_match_cached: bool | None = None


def _config() -> tuple:
    global _cfg
    cfg = _cfg
    if cfg is None:
        cfg = _cfg = (
            getattr(settings, "SESSIOND_URL", "http://127.0.0.1:8080"),
            getattr(settings, "SESSIOND_CONTEXT", None),
            getattr(settings, "SESSIOND_TOKEN_FILE", None),
            float(getattr(settings, "SESSIOND_TIMEOUT", 5.0)),
        )
    return cfg


def _kwargs(cfg: tuple) -> dict[str, Any]:
    url, context, token_file, timeout = cfg
    return {"url": url, "context": context, "token_file": token_file, "timeout": timeout}


def client() -> Client:
    """The process's :class:`sessiond.Client` for the current settings."""
    global _current
    c = _current
    if c is not None:
        return c
    cfg = _config()
    with _lock:
        c = _sync.get(cfg)
        if c is None:
            c = _sync[cfg] = Client(**_kwargs(cfg))
        _current = c
        return c


def async_client() -> AsyncClient:
    """The running event loop's :class:`sessiond.AsyncClient` for the current settings."""
    cfg = _config()
    loop = asyncio.get_running_loop()
    per_loop = _async.setdefault(loop, {})
    c = per_loop.get(cfg)
    if c is None:
        c = per_loop[cfg] = AsyncClient(**_kwargs(cfg))
    return c


def _reset_clients(*, setting: str, **kwargs) -> None:
    global _current, _cfg, _if_match_cached
    if setting.startswith("SESSIOND_"):
        with _lock:
            old = list(_sync.values())
            _sync.clear()
            _current = None
            _cfg = None
            _if_match_cached = None
        for c in old:
            c.close()


setting_changed.connect(_reset_clients, dispatch_uid="sessiond.django.reset_clients")


def _if_match() -> bool:
    global _if_match_cached
    v = _if_match_cached
    if v is None:
        v = _if_match_cached = bool(getattr(settings, "SESSIOND_IF_MATCH", False))
    return v


# ---- expiry ----
def _expiry_fields(expiry: Any) -> dict[str, Any] | None:
    """sessiond's ``timeout``/``deadline`` for Django's ``_session_expiry``; None: already past."""
    if expiry is None or expiry == 0:
        # Django's default policy, or a browser-session cookie: the context's own timeout.
        return {"timeout": None, "deadline": None}
    if isinstance(expiry, int):
        if expiry < 0:
            return None
        return {"timeout": expiry, "deadline": None}
    when = datetime.fromisoformat(expiry)
    when = when.astimezone(UTC)  # a naive value is local time, as timezone.now() gives it
    left = (when - datetime.now(UTC)).total_seconds()
    if left <= 0:
        return None
    # A fixed end: the idle timeout is the time left, so only the deadline ends it.
    return {"timeout": max(1, math.floor(left)), "deadline": when.isoformat().replace("+00:00", "Z")}


def principal_for(user) -> str:
    """The principal a login of ``user`` sets (``SESSIOND_PRINCIPAL``, default the username)."""
    f = getattr(settings, "SESSIOND_PRINCIPAL", None)
    if f is None:
        return str(user.get_username())
    if isinstance(f, str):
        f = import_string(f)
    return str(f(user))


class SessionStore(SessionBase):
    """Django's SessionBase over sessiond; see the module doc for the mapping."""

    def __init__(self, session_key: str | None = None):
        super().__init__(session_key)
        self._etag: str | None = None
        # Serialized value of every key as last loaded or saved: save() sends the difference.
        self._stored: dict[str, bytes] = {}
        self._principal: Any = UNSET

    # ---- values ----
    def _enc(self, value: Any) -> bytes:
        return self.serializer().dumps(value)

    def _dec(self, raw: str | bytes) -> Any:
        b = raw.encode("utf-8") if isinstance(raw, str) else raw
        try:
            return self.serializer().loads(b)
        except Exception:
            # Not written by this engine (another application's attribute): kept as it is.
            return raw

    def _loaded(self, attributes: dict[str, Any], etag: str | None) -> dict[str, Any]:
        data = {k: self._dec(v) for k, v in attributes.items()}
        self._stored = {k: self._enc(v) for k, v in data.items()}
        self._etag = etag
        return data

    def _forget(self) -> dict[str, Any]:
        self._session_key = None
        self._stored = {}
        self._etag = None
        return {}

    def set_principal(self, name: str | None) -> None:
        """Names the session's principal (None clears it); sent with the next save."""
        self._principal = name
        self.modified = True

    def _create_args(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """``POST`` arguments for ``data``; None when its expiry is already past."""
        fields = _expiry_fields(data.get(EXPIRY_KEY))
        if fields is None:
            return None
        args: dict[str, Any] = {"attributes": {k: self._enc(v) for k, v in data.items()}}
        args.update({k: v for k, v in fields.items() if v is not None})
        if self._principal is not UNSET and self._principal is not None:
            args["principal"] = self._principal
        return args

    def _created(self, s, args) -> None:
        self._session_key = s.id
        self._etag = s.etag
        self._stored = dict(args["attributes"])
        self._principal = UNSET
        self.modified = True

    def _changes(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]] | None:
        """``PATCH`` arguments and the new stored form; None when the expiry is past."""
        now = {k: self._enc(v) for k, v in data.items()}
        attrs: dict[str, bytes | None] = {k: v for k, v in now.items() if self._stored.get(k) != v}
        attrs.update({k: None for k in self._stored if k not in now})
        args: dict[str, Any] = {"attributes": attrs}
        if EXPIRY_KEY in attrs:
            fields = _expiry_fields(data.get(EXPIRY_KEY))
            if fields is None:
                return None
            args.update(fields)
        if self._principal is not UNSET:
            args["principal"] = self._principal
        if _if_match() and self._etag:
            args["if_match"] = self._etag
        return args, now

    # ---- sync ----
    def load(self) -> dict[str, Any]:
        if self.session_key is None:
            return self._forget()
        try:
            s = client().get(self.session_key)
        except errors.SessionNotFound:
            return self._forget()
        return self._loaded(s.attributes, s.etag)

    def exists(self, session_key: str | None) -> bool:
        return bool(session_key) and client().exists(session_key)

    def create(self) -> None:
        data = getattr(self, "_session_cache", {})
        args = self._create_args(data)
        if args is None:  # expired before it was stored: nothing to keep
            self._forget()
            return
        self._created(client().create(**args), args)

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None or must_create:
            return self.create()
        data = self._get_session()
        if self.session_key is None:  # the load found it gone
            return self.create()
        plan = self._changes(data)
        if plan is None:
            self.delete()
            self._forget()
            return
        args, now = plan
        c = client()
        try:
            if not args["attributes"] and args.keys() <= {"attributes", "if_match"}:
                c.touch(self.session_key)
            else:
                self._etag = c.patch(self.session_key, **args) or self._etag
        except errors.SessionNotFound as e:
            raise UpdateError from e
        self._stored = now
        self._principal = UNSET

    def delete(self, session_key: str | None = None) -> None:
        key = session_key or self.session_key
        if key is None:
            return
        client().delete(key, missing_ok=True)
        if key == self.session_key:
            self._stored = {}
            self._etag = None

    def cycle_key(self) -> None:
        data = self._session
        key = self.session_key
        if key is not None:
            try:
                s = client().rotate(key)
                self._session_key = s.id
                self._etag = s.etag or self._etag
                self._session_cache = data
                return
            except errors.SessionNotFound:
                self._forget()
        self._session_cache = data
        self.create()

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: sessiond's reaper ends expired sessions."""

    # ---- async twins ----
    async def aload(self) -> dict[str, Any]:
        if self.session_key is None:
            return self._forget()
        try:
            s = await async_client().get(self.session_key)
        except errors.SessionNotFound:
            return self._forget()
        return self._loaded(s.attributes, s.etag)

    async def aexists(self, session_key: str | None) -> bool:
        return bool(session_key) and await async_client().exists(session_key)

    async def acreate(self) -> None:
        data = getattr(self, "_session_cache", {})
        args = self._create_args(data)
        if args is None:
            self._forget()
            return
        self._created(await async_client().create(**args), args)

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None or must_create:
            return await self.acreate()
        data = await self._aget_session()
        if self.session_key is None:
            return await self.acreate()
        plan = self._changes(data)
        if plan is None:
            await self.adelete()
            self._forget()
            return
        args, now = plan
        c = async_client()
        try:
            if not args["attributes"] and args.keys() <= {"attributes", "if_match"}:
                await c.touch(self.session_key)
            else:
                self._etag = await c.patch(self.session_key, **args) or self._etag
        except errors.SessionNotFound as e:
            raise UpdateError from e
        self._stored = now
        self._principal = UNSET

    async def adelete(self, session_key: str | None = None) -> None:
        key = session_key or self.session_key
        if key is None:
            return
        await async_client().delete(key, missing_ok=True)
        if key == self.session_key:
            self._stored = {}
            self._etag = None

    async def acycle_key(self) -> None:
        data = await self._aget_session()
        key = self.session_key
        if key is not None:
            try:
                s = await async_client().rotate(key)
                self._session_key = s.id
                self._etag = s.etag or self._etag
                self._session_cache = data
                return
            except errors.SessionNotFound:
                self._forget()
        self._session_cache = data
        await self.acreate()

    @classmethod
    async def aclear_expired(cls) -> None:
        """Nothing to do: sessiond's reaper ends expired sessions."""


# ---- auth ----
def _on_login(sender, request, user, **kwargs) -> None:
    session = getattr(request, "session", None)
    if isinstance(session, SessionStore):
        session.set_principal(principal_for(user))


user_logged_in.connect(_on_login, dispatch_uid="sessiond.django.principal")


def logout_everywhere(user) -> int:
    """Ends every session of ``user`` (its principal) in every context; returns how many."""
    return client().delete_principal_sessions(principal_for(user))


async def alogout_everywhere(user) -> int:
    """The async twin of :func:`logout_everywhere`."""
    return await async_client().delete_principal_sessions(principal_for(user))
