"""Runs Django's own session tests (tests/sessions_tests in Django's source
distribution, fetched from PyPI at test time) with sessiond.django as backend.

The source distribution of the installed Django version is downloaded once into
the repository's target/django-src/ with `pip download --no-binary :all:`.
Our test module is linked into its tests/ directory, and Django's runtests.py
runs it: SessionTestsMixin in full, and the backend-agnostic SessionMiddlewareTests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import django
import pytest
from sessiond_server import REPO

HERE = Path(__file__).parent


def django_tests_dir() -> Path:
    version = django.get_version()
    root = REPO / "target" / "django-src"
    tests = root / f"django-{version}" / "tests"
    if (tests / "runtests.py").is_file():
        return tests
    root.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-binary",
            ":all:",
            "--no-deps",
            f"django=={version}",
            "-d",
            str(root),
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.fail(f"pip download django=={version} failed (run `bash tools/test`):\n{r.stderr}")
    sdist = next(p for p in root.iterdir() if p.name.lower() == f"django-{version}.tar.gz")
    with tarfile.open(sdist) as t:
        t.extractall(root, filter="data")
    return tests


def test_django_session_tests(server):
    tests = django_tests_dir()
    link = tests / "sessiond_sessions_tests"
    if not link.exists():
        link.symlink_to(HERE / "django_suite" / "sessiond_sessions_tests")
    env = dict(os.environ, SESSIOND_URL=server.url)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tests), env.get("PYTHONPATH")]))
    r = subprocess.run(
        [
            sys.executable,
            "runtests.py",
            "--settings=test_sqlite",
            "--parallel=1",
            "-v",
            "2",
            "sessiond_sessions_tests",
            "sessions_tests.models",
        ],
        cwd=tests,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = r.stdout + r.stderr
    (REPO / "target" / "django-suite.log").write_text(out)
    ran = re.search(r"^Ran (\d+) tests?", out, re.M)
    print(out[-3000:])
    assert ran, f"runtests.py ran nothing:\n{out[-5000:]}"
    # Names as runtests.py -v 2 lists them; "... ok" may be on the next line (docstrings).
    mixin = len(set(re.findall(r"\(sessiond_sessions_tests\.tests\.SessiondSessionTests\.(\w+)\)", out)))
    mw = r"\(sessiond_sessions_tests\.tests\.SessiondMiddlewareTests\.(\w+)\)"
    middleware = len(set(re.findall(mw, out)))
    print(
        f"Django {django.get_version()}: {ran.group(1)} ran; SessionTestsMixin {mixin} tests, "
        f"SessionMiddlewareTests {middleware} tests; result: {'OK' if r.returncode == 0 else 'FAILED'}"
    )
    assert r.returncode == 0 and re.search(r"^OK", out, re.M), out[-8000:]
