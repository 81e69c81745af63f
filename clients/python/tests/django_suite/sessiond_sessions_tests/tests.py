"""Django's own session tests with sessiond.django as the backend.

This module is linked into the tests/ directory of the Django source
distribution at test time (never copied into this repository) and run by
Django's runtests.py; see tests/test_django_suite.py.
"""

import os

import sessions_tests.tests as dj
from django.test import SimpleTestCase, override_settings

from sessiond import Client
from sessiond.django import SessionStore

SESSIOND = override_settings(
    SESSIOND_URL=os.environ["SESSIOND_URL"],
    SESSION_ENGINE="sessiond.django",
)


@SESSIOND
class SessiondSessionTests(dj.SessionTestsMixin, SimpleTestCase):
    """Every test of Django's SessionTestsMixin, as CacheSessionTests runs them."""

    backend = SessionStore


@SESSIOND
class SessiondMiddlewareTests(dj.SessionMiddlewareTests):
    """Django's backend-agnostic SessionMiddlewareTests with this engine."""

    # Reads django.contrib.sessions.models.Session, i.e. the db backend's table:
    # not backend-agnostic. test_empty_session_saved_in_sessiond below is the same
    # check against sessiond.
    test_empty_session_saved = None

    def test_empty_session_saved_in_sessiond(self):
        from django.contrib.sessions.middleware import SessionMiddleware
        from django.http import HttpResponse

        def set_foo(request):
            request.session["foo"] = "bar"
            return HttpResponse("Session test")

        request = self.request_factory.get("/")
        middleware = SessionMiddleware(set_foo)
        response = middleware(request)
        key = request.session.session_key
        self.assertIn(f"Set-Cookie: sessionid={key}", str(response.cookies))
        c = Client(os.environ["SESSIOND_URL"])
        self.assertEqual(set(c.get(key, touch=False).attributes), {"foo"})

        del request.session["foo"]
        response = middleware.process_response(request, HttpResponse("Session test"))
        self.assertEqual(c.get(key, touch=False).attributes, {})
        self.assertIn(f"Set-Cookie: sessionid={key}", str(response.cookies))
        self.assertEqual(response.headers["Vary"], "Cookie")
        c.close()
