#!/usr/bin/env python3
"""Create N sessions on a running sessiond, each holding a 256-byte value
named `x`, and print their ids one per line (keep-alive, stdlib only)."""
import http.client
import json
import sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection(host, port)
value = b"v" * 256
for _ in range(n):
    conn.request("POST", "/v1/sessions")
    r = conn.getresponse()
    body = r.read()
    if r.status != 201:
        sys.exit(f"create failed: {r.status} {body[:200]!r}")
    sid = json.loads(body)["id"]
    conn.request("PUT", f"/v1/sessions/{sid}/attributes/x", body=value)
    r = conn.getresponse()
    r.read()
    if r.status != 204:
        sys.exit(f"put failed: {r.status}")
    print(sid)
