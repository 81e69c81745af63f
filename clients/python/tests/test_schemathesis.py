"""schemathesis (from PyPI) against a live sessiond with docs/openapi.yaml:
examples, coverage, fuzzing and stateful phases (the spec's links from
POST /v1/sessions). It must find no 5xx and no response that breaks the spec."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sessiond_server import REPO

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def test_schemathesis_finds_nothing(server):
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("schemathesis is not installed in this venv; run `bash tools/test`")
    cmd = [
        exe,
        "run",
        str(REPO / "docs" / "openapi.yaml"),
        "--url",
        server.url,
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        os.environ.get("SESSIOND_SCHEMATHESIS_EXAMPLES", "25"),
        "--seed",
        "1",
        "--no-color",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    (REPO / "target" / "schemathesis.log").write_text(out)
    summary = re.search(r"Test cases:\s*\n\s*(.*)", out)
    print("schemathesis:", summary.group(1) if summary else out[-2000:])
    assert r.returncode == 0, (
        f"schemathesis found problems (full log: target/schemathesis.log):\n{out[-12000:]}"
    )
