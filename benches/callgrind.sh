#!/usr/bin/env bash
# Instructions per HTTP request in a worker, counted by callgrind, for one
# or two sessiond binaries: a count that does not depend on what else the
# machine is doing, beside benches/ab.sh's wall-clock req/s. One worker
# (max_procs = 1); 100 sessions with a 256-byte value `x`; 600 warm-up
# requests, then 2,000 GETs and 2,000 PUTs of /v1/session/attributes/x by
# cookie on one keep-alive connection, each phase between a zero and a dump
# of the worker's counters (callgrind_control -z / -d).
#
#   OLD=/tmp/old-target/release/sessiond bash benches/callgrind.sh
#   KEEP=1 CALLGRIND_ARGS=--cache-sim=yes ...   (keeps the dumps: read their D1mr/DLmr columns)
#
# Prints a Markdown table. Needs valgrind (apt-get install -y valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
NEW=${NEW:-$ROOT/target/release/sessiond}
N=2000
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 1; }
WORK=$(mktemp -d /tmp/sessiond-cg.XXXXXX)
VP=""
cleanup() { [ -z "$VP" ] || kill -9 "$VP" 2>/dev/null || true; if [ "${KEEP:-}" = 1 ]; then echo "dumps kept in $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

count() { # $1 = name, $2 = binary, $3 = port -> "read_per_req write_per_req"
  local out="$WORK/$1"
  mkdir -p "$out/data"
  cat > "$out/c.toml" <<T
listen = "127.0.0.1:$3"
data_dir = "$out/data"
max_procs = 1
log_level = "warn"
[sessions]
max_sessions = 2000
max_values_per_session = 4
max_value_size = 256
max_locks = 16
timeout = 3600
T
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --trace-children=yes --compress-strings=no --compress-pos=no ${CALLGRIND_ARGS:-} \
    --callgrind-out-file="$out/cg.%p" "$2" --config "$out/c.toml" 2>"$out/valgrind.log" &
  VP=$!
  local i
  for i in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/"$3") 2>/dev/null && break; sleep 0.1; done
  python3 "$ROOT/benches/prepare_sessions.py" 127.0.0.1 "$3" 100 > "$out/ids"
  python3 - "$3" "$out/ids" "$N" <<'PY'
import http.client, subprocess, sys
port, ids, n = int(sys.argv[1]), open(sys.argv[2]).read().split(), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
def run(method, k, body=None):
    for i in range(k):
        c.request(method, "/v1/session/attributes/x", body=body, headers={"Cookie": "SESSIONID=" + ids[i % len(ids)]})
        r = c.getresponse(); r.read()
        if r.status not in (200, 204):
            sys.exit(f"{method} answered {r.status}")
def ctl(*a): subprocess.run(["callgrind_control", *a], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
run("GET", 300); run("PUT", 300, b"w" * 256)
ctl("-z"); run("GET", n); ctl("-d", "read")
ctl("-z"); run("PUT", n, b"w" * 256); ctl("-d", "write")
PY
  kill "$VP"; wait "$VP" 2>/dev/null || true; VP=""
  # The worker is the process whose dump holds the most instructions.
  local phase best f t
  for phase in 1 2; do
    best=0
    for f in "$out"/cg.*."$phase"; do
      t=$(awk '/^summary:/ {print $2; exit}' "$f")
      [ "$t" -gt "$best" ] && best=$t
    done
    echo -n "$((best / N)) "
  done
  echo
}

echo "| binary | instructions per read | instructions per write |"
echo "| --- | ---: | ---: |"
if [ -n "${OLD:-}" ]; then
  read -r r w <<<"$(count old "$OLD" 18291)"
  echo "| old ($OLD) | $r | $w |"
fi
read -r r w <<<"$(count new "$NEW" 18292)"
echo "| new ($NEW) | $r | $w |"
