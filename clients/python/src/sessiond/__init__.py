"""sessiond: a client for sessiond's HTTP session API, and a Django session engine.

``sessiond.Client`` / ``sessiond.AsyncClient`` cover every session route; errors
are the typed exceptions of :mod:`sessiond.errors`, all exported here too
(``sessiond.SessionNotFound``, ``sessiond.PreconditionFailed``, ...).
``SESSION_ENGINE = "sessiond.django"`` makes Django keep its sessions in sessiond.
"""

from . import errors
from .client import UNSET, AsyncClient, Client, Page, Session, decode_value, encode_value
from .errors import *  # noqa: F403  (every exception class)

__version__ = "0.1.0"

_EXCEPTIONS = [
    n for n, c in vars(errors).items() if isinstance(c, type) and issubclass(c, errors.SessiondError)
]

__all__ = [
    "UNSET",
    "AsyncClient",
    "Client",
    "Page",
    "Session",
    "decode_value",
    "encode_value",
    "errors",
    *_EXCEPTIONS,
]
