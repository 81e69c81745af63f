#!/usr/bin/env python3
"""Make N sessions through an application's own page: GET URL N times without
a cookie, and print the value of the cookie NAME each answer sets, one per line
(stdlib only; keep-alive where the server keeps the connection)."""

import http.client
import sys
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urlsplit(url)
conn = http.client.HTTPConnection(u.hostname, u.port)
seen = set()
for _ in range(n):
    conn.request("GET", u.path or "/")
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"{url}: {r.status} {body[:300]!r}")
    value = None
    for header in r.headers.get_all("Set-Cookie") or []:
        c = SimpleCookie(header)
        if name in c:
            value = c[name].value
    if not value or value in seen:
        sys.exit(f"{url}: no new {name} cookie in {dict(r.headers)!r}")
    seen.add(value)
    print(value)
