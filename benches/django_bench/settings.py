"""Settings of the adapter benchmark (benches/adapters.sh): one view, one session backend.

BENCH_BACKEND picks the backend:

- ``sessiond``: ``sessiond.django`` at SESSIOND_URL;
- ``redis``: Django's cache backend on ``django.core.cache.backends.redis.RedisCache`` at BENCH_REDIS_URL;
- ``db``: Django's db backend on PostgreSQL at BENCH_PG_HOST:BENCH_PG_PORT, database BENCH_PG_DB.

All three keep their connections across requests: sessiond.Client's pool (sessiond), redis-py's pool (Redis)
and ``CONN_MAX_AGE = None`` (PostgreSQL; Django's default, 0, connects anew on every request).
"""

import os

BENCH_BACKEND = BACKEND = os.environ.get("BENCH_BACKEND", "sessiond")

SECRET_KEY = "adapter-benchmark-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "urls"
WSGI_APPLICATION = "wsgi.application"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.sessions"]
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
LOGGING_CONFIG = None
DATABASES: dict = {}

if BACKEND == "sessiond":
    SESSION_ENGINE = "sessiond.django"
    SESSIOND_URL = os.environ["SESSIOND_URL"]
elif BACKEND == "redis":
    SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["BENCH_REDIS_URL"],
        }
    }
elif BACKEND == "db":
    SESSION_ENGINE = "django.contrib.sessions.backends.db"
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ["BENCH_PG_HOST"],
            "PORT": os.environ["BENCH_PG_PORT"],
            "NAME": os.environ.get("BENCH_PG_DB", "bench"),
            "USER": "postgres",
            "CONN_MAX_AGE": None,
        }
    }
else:
    raise RuntimeError(f"BENCH_BACKEND must be sessiond, redis or db, not {BACKEND!r}")
