"""The engine in a real Django project (tests/shop): login and a cart across
requests, key rotation at login, logout everywhere from a second client, and two
concurrent requests changing different keys, beside Django's cache backend."""

from __future__ import annotations

import os
import threading

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")


@pytest.fixture(scope="module")
def shop(server, tmp_path_factory):
    os.environ["SESSIOND_URL"] = server.url
    os.environ["SHOP_DB"] = str(tmp_path_factory.mktemp("shop") / "db.sqlite3")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command

    settings.SESSIOND_URL = server.url
    call_command("migrate", verbosity=0)
    User.objects.create_user("alice", password="wonderland")
    return server


def cookie(c) -> str | None:
    m = c.cookies.get("sessionid")
    return m.value if m is not None and m.value else None


def test_login_cart_rotation_and_logout_everywhere(shop):
    from django.test import Client as Browser

    from sessiond import Client

    api = Client(shop.url)
    b1 = Browser()
    assert b1.get("/cart/add", {"item": "apple"}).json() == {"cart": ["apple"]}
    anon = cookie(b1)
    assert anon and api.get(anon, touch=False).attributes["cart"] == '["apple"]'

    assert b1.post("/login", {"username": "alice", "password": "wonderland"}).status_code == 200
    k1 = cookie(b1)
    assert k1 != anon, "login rotates the key"
    assert not api.exists(anon), "the pre-login id is dead"
    assert b1.get("/cart/add", {"item": "pear"}).json() == {"cart": ["apple", "pear"]}
    assert b1.get("/cart").json() == {"cart": ["apple", "pear"], "user": "alice"}
    assert api.get(k1, touch=False).principal == "alice"

    b2 = Browser()
    b2.post("/login", {"username": "alice", "password": "wonderland"})
    k2 = cookie(b2)
    assert k2 and k2 != k1
    assert b2.post("/logout-everywhere").json() == {"ended": 2}
    assert not api.exists(k1) and not api.exists(k2)
    assert b1.get("/cart").json() == {"cart": [], "user": None}, "the first browser is logged out too"
    api.close()


def race(engine: str) -> dict:
    from django.test import Client as Browser
    from django.test.utils import override_settings

    with override_settings(SESSION_ENGINE=engine):
        first = Browser()
        first.get("/race/start")
        key = cookie(first)
        assert key
        results = []

        def one(k: str) -> None:
            b = Browser()
            b.cookies["sessionid"] = key
            results.append(b.get("/race", {"key": k, "value": k + "!"}).status_code)

        threads = [threading.Thread(target=one, args=(k,)) for k in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [200, 200]
        return first.get("/race/show").json()


def test_concurrent_requests_keep_both_changes(shop):
    assert race("sessiond.django") == {"start": 1, "a": "a!", "b": "b!"}


def test_cache_backend_loses_one_of_them(shop):
    got = race("django.contrib.sessions.backends.cache")
    assert got["start"] == 1
    assert len({"a", "b"} & got.keys()) == 1, f"Django's cache backend kept both? {got}"
