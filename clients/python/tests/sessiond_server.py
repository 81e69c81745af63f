"""Starts the real sessiond binary for the tests: ephemeral port, temporary data dir.

The binary is ``$SESSIOND_BIN``, else the newest of the repository's
``target/debug/sessiond`` and ``target/release/sessiond``. Missing, the test fails
and names the command that builds it.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[3]


def sessiond_bin() -> Path:
    env = os.environ.get("SESSIOND_BIN")
    if env:
        p = Path(env)
        if not p.is_file():
            raise RuntimeError(f"SESSIOND_BIN={env} does not exist; run `bash tools/test`")
        return p
    found = [p for p in (REPO / "target/debug/sessiond", REPO / "target/release/sessiond") if p.is_file()]
    if not found:
        raise RuntimeError(
            f"no sessiond binary under {REPO}/target; run `bash tools/test` "
            "(or `cargo build --bin sessiond`) first, or set SESSIOND_BIN"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


class Server:
    """A running sessiond: ``url`` is ``http://127.0.0.1:PORT`` (or ``unix:/path``)."""

    def __init__(self, *args: str, listen: str = "127.0.0.1:0", token: str | None = None, procs: int = 2):
        self.tmp = tempfile.TemporaryDirectory(prefix="sessiond-py-")
        d = Path(self.tmp.name)
        cmd = [
            str(sessiond_bin()),
            "--listen",
            listen,
            "--data-dir",
            str(d / "data"),
            "--max-procs",
            str(procs),
            "--set",
            "sessions.max_values_per_session=64",
            "--set",
            "sessions.max_value_size=65536",
        ]
        self.token = token
        if token is not None:
            tf = d / "token"
            tf.write_text(token + "\n")
            tf.chmod(0o600)
            self.token_file = str(tf)
            cmd += ["--set", f"api_token_file={tf}"]
        else:
            self.token_file = None
        cmd += list(args)
        env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "NOTIFY_SOCKET", "LISTEN_FDS")}
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.log: list[str] = []
        self._ready = threading.Event()
        self.address = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(30):
            self.stop()
            raise RuntimeError("sessiond did not log 'listening on' within 30 s:\n" + "\n".join(self.log))
        self.url = self.address if self.address.startswith("unix:") else f"http://{self.address}"
        self._wait_healthy()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            m = re.search(r"listening on (\S+)", line)
            if m and not self._ready.is_set():
                self.address = m.group(1)
                self._ready.set()

    def _wait_healthy(self) -> None:
        from sessiond import Client

        c = Client(self.url, token=self.token, timeout=2)
        t = time.monotonic()
        while time.monotonic() - t < 20:
            try:
                c.health()
                c.close()
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("sessiond not healthy within 20 s:\n" + "\n".join(self.log))

    def http(self) -> httpx.Client:
        """A raw HTTP client on the server (for checks the adapters do not make)."""
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self.url.startswith("unix:"):
            return httpx.Client(
                base_url="http://sessiond", headers=h, transport=httpx.HTTPTransport(uds=self.url[5:])
            )
        return httpx.Client(base_url=self.url, headers=h)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.tmp.cleanup()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
