#!/usr/bin/env python3
"""A demo application for examples/gateway.toml: greets the user sessiond
names in X-Sessiond-User, shows the session's control handle, and offers a
logout button. Standard library only.

On start it writes examples/gateway.secret (mode 0600) if it is missing,
so `sessiond --config examples/gateway.toml` finds a signing secret.
"""
import html
import os
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = os.path.join(HERE, "gateway.secret")


class App(BaseHTTPRequestHandler):
    def do_GET(self):
        user = self.headers.get("X-Sessiond-User", "(nobody)")
        handle = self.headers.get("X-Sessiond-Session", "")
        body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Demo app</title></head>
<body><main><h1>Hello, {html.escape(user)}</h1>
<p>You asked for <code>{html.escape(self.path)}</code>. Your session's control handle is <code>{html.escape(handle)}</code>.</p>
<form method="post" action="/.sessiond/logout"><button id="logout">Log out</button></form>
</main></body></html>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    if not os.path.exists(SECRET):
        fd = os.open(SECRET, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secrets.token_urlsafe(32).encode())
        os.close(fd)
        print(f"wrote {SECRET} (mode 0600)")
    print("demo application on http://127.0.0.1:9000 (reach it through sessiond at http://127.0.0.1:8443)")
    ThreadingHTTPServer(("127.0.0.1", 9000), App).serve_forever()
