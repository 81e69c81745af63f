"""Client-side cost of one request's session work, in one process, outside gunicorn.

    BENCH_BACKEND=sessiond PYTHONPATH=benches/django_bench python clientcost.py IDS_FILE [N]

Times N rounds (default 2000) over the sessions in IDS_FILE of: the backend's ``SessionStore``
load, change of one key and save (what the benchmark's view does), and the calls under it, each
alone. Prints one line per measure: ``label cpu_us wall_us``, per round.
"""

import http.client
import json
import os
import sys
import time
from importlib import import_module
from urllib.parse import urlsplit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402
import httpx  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

ids = open(sys.argv[1]).read().split()
n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000


def measure(label, f):
    for i in range(min(n, 100)):
        f(ids[i % len(ids)])
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        f(ids[i % len(ids)])
    t1, c1 = time.perf_counter(), time.process_time()
    print(f"{label} {(c1 - c0) / n * 1e6:.0f} {(t1 - t0) / n * 1e6:.0f}", flush=True)


engine = import_module(settings.SESSION_ENGINE)


def store(key):
    s = engine.SessionStore(key)
    s["n"] = s.get("n", 0) + 1
    s.save()


measure("SessionStore(key):_load,_change_one_key,_save_(the_view's_session_work)", store)

if settings.BENCH_BACKEND == "sessiond":
    from sessiond.django import client

    c = client()
    measure("sessiond.Client_(its_own_HTTP/1.1_pool):_get()_+_patch()", lambda k: c.patch(k, {"n": c.get(k).attributes["n"]}))
    body = b'{"attributes":{"n":"1"}}'
    hx = httpx.Client(base_url=settings.SESSIOND_URL)

    def bare_httpx(k):
        hx.get(f"/v1/sessions/{k}").json()
        hx.patch(f"/v1/sessions/{k}", content=body, headers={"content-type": "application/json"}).read()

    measure("bare_httpx.Client:_the_same_GET_+_PATCH", bare_httpx)
    u = urlsplit(settings.SESSIOND_URL)
    conn = http.client.HTTPConnection(u.hostname, u.port)

    def stdlib(k):
        conn.request("GET", f"/v1/sessions/{k}")
        json.loads(conn.getresponse().read())
        conn.request("PATCH", f"/v1/sessions/{k}", body=body, headers={"content-type": "application/json"})
        conn.getresponse().read()

    measure("stdlib_http.client,_kept_connection:_the_same_GET_+_PATCH", stdlib)
elif settings.BENCH_BACKEND == "redis":
    import redis
    from django.core.cache import cache

    measure(
        "Django_cache.get()_+_cache.set()_(RedisCache)",
        lambda k: cache.set("x" + k, cache.get("x" + k, {"n": 1}), 1209600),
    )
    r = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    value = b"x" * 64
    measure("bare_redis-py:_GET_+_SET", lambda k: (r.get("y" + k), r.set("y" + k, value, ex=1209600)))
