"""Typed exceptions: one class per error code of sessiond's API (docs/openapi.yaml).

Every API error body is ``{"error": "<code>", "message": "..."}``. :func:`error_for`
picks the class registered for the code, and falls back to the class for the HTTP
status when the code is one this client does not know yet.
"""

from __future__ import annotations


class SessiondError(Exception):
    """Base of every error this package raises."""


class Unavailable(SessiondError):
    """sessiond could not be reached: the request was not answered. Never means "no session"."""

    def __init__(self, message: str, address: str):
        super().__init__(message)
        self.address = address


class ConnectFailed(Unavailable):
    """The connection to sessiond could not be made (refused, no such socket, DNS)."""


class Timeout(Unavailable):
    """sessiond did not answer within the client's timeout."""


class APIError(SessiondError):
    """sessiond answered with an error status."""

    status: int = 0
    code: str = ""

    def __init__(self, status: int, code: str, message: str, address: str = ""):
        super().__init__(f"{status} {code}: {message}" + (f" (sessiond at {address})" if address else ""))
        self.status = status
        self.code = code
        self.message = message
        self.address = address


# ---- by status ----
class BadRequest(APIError):
    status = 400


class Unauthorized(APIError):
    status = 401


class NotFound(APIError):
    status = 404


class MethodNotAllowed(APIError):
    status = 405


class RequestTimeout(APIError):
    status = 408


class Conflict(APIError):
    status = 409


class PreconditionFailed(APIError):
    """412: the session changed since the ETag given in If-Match."""

    status = 412
    code = "precondition_failed"


class PayloadTooLarge(APIError):
    status = 413


class HeadersTooLarge(APIError):
    status = 431


class InternalError(APIError):
    status = 500


class ServiceUnavailable(APIError):
    status = 503


# ---- by code ----
class InvalidName(BadRequest):
    code = "invalid_name"


class BadJson(BadRequest):
    code = "bad_json"


class TooManyChanges(BadRequest):
    code = "too_many_changes"


class BadLimit(BadRequest):
    code = "bad_limit"


class BadCursor(BadRequest):
    code = "bad_cursor"


class BadBody(BadRequest):
    code = "bad_body"


class BadTransferEncoding(BadRequest):
    code = "bad_transfer_encoding"


class BadTimeout(BadRequest):
    code = "bad_timeout"


class BadDeadline(BadRequest):
    code = "bad_deadline"


class BadPrincipal(BadRequest):
    code = "bad_principal"


class BadFilter(BadRequest):
    code = "bad_filter"


class AmbiguousPath(BadRequest):
    code = "ambiguous_path"


class SessionNotFound(NotFound):
    code = "session_not_found"


class AttributeNotFound(NotFound):
    code = "attribute_not_found"


class UnknownContext(NotFound):
    code = "unknown_context"


class RouteNotFound(NotFound):
    code = "route_not_found"


class BodyTimeout(RequestTimeout):
    code = "body_timeout"


class TooManyValues(Conflict):
    code = "too_many_values"


class TooManySessions(Conflict):
    code = "too_many_sessions"


class SessionMoved(Conflict):
    code = "session_moved"


class ValueTooLarge(PayloadTooLarge):
    code = "value_too_large"


class BodyTooLarge(PayloadTooLarge):
    code = "body_too_large"


class Internal(InternalError):
    code = "internal"


class MaxSessions(ServiceUnavailable):
    code = "max_sessions"


class LockTimeout(ServiceUnavailable):
    code = "lock_timeout"


class StoreUnavailable(ServiceUnavailable):
    code = "store_unavailable"


_BY_STATUS: dict[int, type[APIError]] = {
    c.status: c
    for c in (
        BadRequest,
        Unauthorized,
        NotFound,
        MethodNotAllowed,
        RequestTimeout,
        Conflict,
        PreconditionFailed,
        PayloadTooLarge,
        HeadersTooLarge,
        InternalError,
        ServiceUnavailable,
    )
}


def _leaves(cls: type[APIError]):
    for sub in cls.__subclasses__():
        yield sub
        yield from _leaves(sub)


#: error code -> exception class (every code in docs/openapi.yaml has one).
BY_CODE: dict[str, type[APIError]] = {c.code: c for c in _leaves(APIError) if c.code}
BY_CODE["unauthorized"] = Unauthorized
BY_CODE["method_not_allowed"] = MethodNotAllowed


def error_for(status: int, code: str, message: str, address: str = "") -> APIError:
    """The typed exception for an error answer."""
    cls = BY_CODE.get(code)
    if cls is None or cls.status != status:
        cls = _BY_STATUS.get(status) or (InternalError if status >= 500 else APIError)
    return cls(status, code, message, address)
