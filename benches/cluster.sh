#!/usr/bin/env bash
# Cluster mode against the same node without [cluster], in one run on one
# machine. benches/compare.sh runs it as its last section; alone:
#
#   bash benches/cluster.sh                      # about 3 minutes on 2 cores
#   DURATION=2 ROUNDS=1 bash benches/cluster.sh  # checks that the script works; not results
#
# Starts a throwaway PostgreSQL (initdb in a temp dir, unix socket, fsync off)
# and Redis (unix socket, no persistence), then three sessiond nodes with the
# same settings: local only, cluster over Redis, cluster over PostgreSQL.
# Measures, with wrk and the same sessions on each:
#   1. owner-local read (GET attribute; the node owns every session)
#   2. attribute write (PUT 256 B), written through to the store before the answer
#   3. failover: the first request on a second node for sessions it has never
#      seen (load, fenced takeover, re-issue), one at a time, p50/p99
#   4. store writes per session per minute under a read-only load, against
#      the bound 60 / save_period
#   5. failover after node 1 stops, by kill -9 of its master and by a clean
#      stop (SIGTERM), under serve-local and fail-closed, for each store: a
#      client on node 2 reads each of node 1's sessions until it answers 200
#      (the takeover), p50/p99 of that request, the answers that were not
#      200 before it, and the time from the signal until every session had
#      been served
# Writes the section between <!-- cluster:begin --> and <!-- cluster:end -->
# of docs/benchmarks.md and docs/img/cluster.png.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SESSIONS=${SESSIONS:-10000}
FAILOVER=${FAILOVER:-1000}          # sessions taken over in part 3
SAVE_PERIOD=${SAVE_PERIOD:-10}      # seconds, part 4
WRITES_SECONDS=${WRITES_SECONDS:-30}
DOC=${DOC:-docs/benchmarks.md}
IMG=${IMG:-docs/img}
CPUS=$(nproc)
WORK=$(mktemp -d /tmp/sessiond-cluster.XXXXXX)
chmod 755 "$WORK"
export WRK_DIR="$ROOT/benches/wrk"
PIDS=()
PGBIN=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -S "$WORK/redis.sock" ] && redis-cli -s "$WORK/redis.sock" shutdown nosave >/dev/null 2>&1 || true
  if [ -n "$PGBIN" ] && [ -d "$WORK/pg" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v wrk >/dev/null || need+=(wrk)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} ..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cargo build --release --quiet --bin sessiond

min() { echo $(( $1 < $2 ? $1 : $2 )); }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
# One wrk run -> "rps p50_us p99_us errors non2xx" (the RESULT line of benches/wrk/common.lua).
run_wrk() { # $1 = script, $2 = url, [$3 = seconds]
  IDS_FILE="$WORK/ids.txt" wrk -t"$(min "$CPUS" "$CONNS")" -c"$CONNS" -d"${3:-$DURATION}"s -s "$WRK_DIR/$1" "$2" > "$WORK/wrk.out" 2>&1
  local line; line=$(grep '^RESULT' "$WORK/wrk.out" || true)
  [ -n "$line" ] || { cat "$WORK/wrk.out" >&2; echo "wrk produced no RESULT" >&2; exit 1; }
  sed -E 's/.*rps=([0-9]+) p50_us=([0-9]+) p99_us=([0-9]+) requests=[0-9]+ errors=([0-9]+) non2xx=([0-9]+).*/\1 \2 \3 \4 \5/' <<<"$line"
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2}'; }

# --- stores ------------------------------------------------------------------
chown postgres: "$WORK"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w -o \
  "-c listen_addresses='' -k $WORK -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100" start >/dev/null
"$PGBIN/psql" -h "$WORK" -U postgres -q -c 'CREATE DATABASE sessiond' postgres
redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 777 --save '' --appendonly no \
  --dir "$WORK" --daemonize yes --logfile "$WORK/redis.log"
until redis-cli -s "$WORK/redis.sock" ping >/dev/null 2>&1; do sleep 0.1; done
PG_URL="postgres://postgres@localhost/sessiond?host=$WORK"
RD_URL="redis+unix://$WORK/redis.sock"
PG_VER=$("$PGBIN/postgres" --version | awk '{print $3}')
RD_VER=$(redis-server --version | sed -E 's/.*v=([0-9.]+).*/\1/')

# --- nodes -------------------------------------------------------------------
# $1 = name, $2 = port, $3 = node_id, $4 = store URL or "" (local), [$5 = save_period],
# [$6 = more [cluster] lines]
start_node() {
  local dir="$WORK/$1"; mkdir -p "$dir"
  cat > "$dir/sd.toml" <<EOF
listen = "127.0.0.1:$2"
data_dir = "$dir/data"
max_procs = $CPUS
node_id = $3
log_level = "warn"
[sessions]
max_sessions = 20000
max_values_per_session = 4
max_value_size = 256
timeout = 3600
EOF
  if [ -n "$4" ]; then
    printf '[cluster]\nstore = "%s"\nsave_period = %s\n%b' "$4" "${5:-60}" "${6:-}" >> "$dir/sd.toml"
  fi
  "$ROOT/target/release/sessiond" --config "$dir/sd.toml" >/dev/null 2>"$dir/log" &
  PIDS+=("$!"); eval "PID_$1=$!"
  wait_port "$2"
  if [ -n "$4" ]; then
    for _ in $(seq 1 200); do [ "$(metric "$2" sessiond_store_reconciled)" = 1 ] && return 0; sleep 0.05; done
    echo "node $1 never reconciled; log:" >&2; cat "$dir/log" >&2; exit 1
  fi
}
stop_node() { local p; p=$(eval echo "\$PID_$1"); kill "$p"; wait "$p" 2>/dev/null || true; }

echo "cluster: starting nodes ..." >&2
start_node local 18281 1 ""
start_node redis 18282 1 "$RD_URL"
start_node pg 18283 1 "$PG_URL"
# The same number of sessions on each (each created on its own node: written through).
for n in local:18281 redis:18282 pg:18283; do
  python3 "$ROOT/benches/prepare_sessions.py" 127.0.0.1 "${n#*:}" "$SESSIONS" > "$WORK/ids_${n%%:*}.txt"
done

# --- 1, 2: interleaved rounds --------------------------------------------------
: > "$WORK/rounds.txt"
for r in $(seq 1 "$ROUNDS"); do
  for n in local:18281 redis:18282 pg:18283; do
    cp "$WORK/ids_${n%%:*}.txt" "$WORK/ids.txt"
    echo "${n%%:*} read $(run_wrk read.lua "http://127.0.0.1:${n#*:}")" >> "$WORK/rounds.txt"
    echo "${n%%:*} write $(run_wrk write.lua "http://127.0.0.1:${n#*:}")" >> "$WORK/rounds.txt"
  done
  echo "cluster: round $r done" >&2
done
med() { awk -v n="$1" -v w="$2" -v c="$3" '$1==n && $2==w {print $c}' "$WORK/rounds.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
errs() { awk -v n="$1" '$1==n {s+=$6+$7} END {print s+0}' "$WORK/rounds.txt"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }

# --- 3: failover latency --------------------------------------------------------
failover() { # $1 = store name, $2 = survivor port (node 2, started by the caller)
  head -n "$FAILOVER" "$WORK/ids_$1.txt" > "$WORK/fo_ids.txt"
  python3 - "$2" "$WORK/fo_ids.txt" <<'PY'
import http.client, sys, time
port, ids = int(sys.argv[1]), open(sys.argv[2]).read().split()
c = http.client.HTTPConnection("127.0.0.1", port)
lat, bad = [], 0
for sid in ids:
    t = time.perf_counter()
    c.request("GET", "/v1/session/attributes/x", headers={"Cookie": "SESSIONID=" + sid})
    r = c.getresponse(); r.read()
    lat.append((time.perf_counter() - t) * 1e6)
    if r.status != 200 or not (r.getheader("set-cookie") or "").startswith("SESSIONID=AAAC"):
        bad += 1
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"{q(0.5):.0f} {q(0.99):.0f} {lat[-1]:.0f} {bad}")
PY
}
echo "cluster: failover ..." >&2
start_node redis2 18284 2 "$RD_URL"
start_node pg2 18285 2 "$PG_URL"
read -r FO_R50 FO_R99 FO_RMAX FO_RBAD <<<"$(failover redis 18284)"
read -r FO_P50 FO_P99 FO_PMAX FO_PBAD <<<"$(failover pg 18285)"
# The same client against sessions the node already owns: the client's own cost.
read -r FO_L50 FO_L99 FO_LMAX _ <<<"$(python3 - 18281 "$WORK/ids_local.txt" "$FAILOVER" <<'PY'
import http.client, sys, time
port, ids, n = int(sys.argv[1]), open(sys.argv[2]).read().split(), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
lat = []
for sid in ids[:n]:
    t = time.perf_counter()
    c.request("GET", "/v1/session/attributes/x", headers={"Cookie": "SESSIONID=" + sid})
    c.getresponse().read()
    lat.append((time.perf_counter() - t) * 1e6)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"{q(0.5):.0f} {q(0.99):.0f} {lat[-1]:.0f} 0")
PY
)"

# --- 4: store writes under a read-only load -----------------------------------------
echo "cluster: store writes under reads (${WRITES_SECONDS}s, save_period=$SAVE_PERIOD) ..." >&2
stop_node redis2; stop_node pg2
writes_per_min() { # $1 = name, $2 = port (node "${1}w", started by the caller)
  python3 "$ROOT/benches/prepare_sessions.py" 127.0.0.1 "$2" 1000 > "$WORK/ids.txt"
  sleep 1
  local before after rps
  before=$(metric "$2" sessiond_store_writes_total)
  read -r rps _ <<<"$(run_wrk read.lua "http://127.0.0.1:$2" "$WRITES_SECONDS")"
  sleep 0.5
  after=$(metric "$2" sessiond_store_writes_total)
  awk -v b="$before" -v a="$after" -v s="$WRITES_SECONDS" -v r="$rps" \
    'BEGIN { printf "%d %d %.2f %.1f\n", a - b, r, (a - b) / 1000 / (s / 60), r * s / 1000 }'
}
start_node redisw 18286 3 "$RD_URL" "$SAVE_PERIOD"
read -r W_R W_RRPS W_RPM W_RREADS <<<"$(writes_per_min redis 18286)"
stop_node redisw
start_node pgw 18287 3 "$PG_URL" "$SAVE_PERIOD"
read -r W_P W_PRPS W_PPM W_PREADS <<<"$(writes_per_min pg 18287)"
stop_node pgw

# --- 5: failover after a stop ------------------------------------------------------
STOPPED=${STOPPED:-200}             # sessions of the stopped node, part 5
echo "cluster: failover after a stop ($STOPPED sessions per case) ..." >&2
: > "$WORK/stops.txt"
port=18300
for store in redis pg; do
  url=$RD_URL; [ "$store" = pg ] && url=$PG_URL
  for mode in serve-local fail-closed; do
    for how in kill term; do
      a="${store}_${mode//-/_}_${how}_1" b="${store}_${mode//-/_}_${how}_2"
      start_node "$a" "$port" 1 "$url" 60 "when_store_down = \"$mode\"\n"
      start_node "$b" $((port + 1)) 2 "$url" 60 "when_store_down = \"$mode\"\n"
      python3 "$ROOT/benches/prepare_sessions.py" 127.0.0.1 "$port" "$STOPPED" > "$WORK/stop_ids.txt"
      pid=$(eval echo "\$PID_$a")
      if [ "$how" = kill ]; then kill -9 "$pid"; else kill -TERM "$pid"; fi
      line=$(python3 - $((port + 1)) "$WORK/stop_ids.txt" <<'PY'
import http.client, sys, time
t0 = time.perf_counter()
port, ids = int(sys.argv[1]), open(sys.argv[2]).read().split()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
lat, not_ok = [], 0
for sid in ids:
    while True:
        t = time.perf_counter()
        c.request("GET", "/v1/session/attributes/x", headers={"Cookie": "SESSIONID=" + sid})
        r = c.getresponse(); r.read()
        if r.status == 200:
            lat.append((time.perf_counter() - t) * 1e6)
            break
        not_ok += 1
        if time.perf_counter() - t0 > 60:
            sys.exit(f"session {sid[:6]}… not served within 60 s ({r.status})")
        time.sleep(0.01)
all_ms = (time.perf_counter() - t0) * 1e3
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"{q(0.5):.0f} {q(0.99):.0f} {not_ok} {all_ms:.0f}")
PY
)
      echo "$store $mode $how $line" >> "$WORK/stops.txt"
      wait "$pid" 2>/dev/null || true
      stop_node "$b"
      port=$((port + 2))
    done
  done
done

# --- plot ------------------------------------------------------------------------
mkdir -p "$IMG"
{
  echo "\"local (no [cluster])\" $(med local read 3) $(med local write 3)"
  echo "\"cluster, Redis $RD_VER\" $(med redis read 3) $(med redis write 3)"
  echo "\"cluster, PostgreSQL $PG_VER\" $(med pg read 3) $(med pg write 3)"
} > "$WORK/cluster.dat"
gnuplot <<EOF
set terminal pngcairo size 1000,520 noenhanced font ",10"
set output "$IMG/cluster.png"
set title "sessiond requests/s: owner-local read and written-through write ($CONNS connections, max_procs=$CPUS, $CPUS cores)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set format y "%.0f"
set ylabel "requests/s (median of $ROUNDS rounds)"
set key outside right top vertical
plot "$WORK/cluster.dat" using 2:xtic(1) title "read (GET attribute)" lc rgb "#1f77b4", \
  "" using 3 title "write (PUT 256 B)" lc rgb "#2ca02c"
EOF

# --- results section ------------------------------------------------------------
# rounds.txt columns: node, workload, req/s (3), p50 µs (4), p99 µs (5), errors, non-2xx.
LR=$(med local read 3) LW=$(med local write 3)
RR=$(med redis read 3) RW=$(med redis write 3)
PR=$(med pg read 3) PW=$(med pg write 3)
{
  echo "<!-- cluster:begin -->"
  echo "### Cluster mode (benches/cluster.sh)"
  echo
  echo "Run on $(date -u +%Y-%m-%d), $CPUS × $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r). Three sessiond nodes with the same settings (max_procs=$CPUS, max_sessions 20000, 4 values of ≤ 256 B), $SESSIONS sessions each, created through their own node: **local** (no \`[cluster]\`), **cluster over Redis $RD_VER** (unix socket, no persistence), **cluster over PostgreSQL $PG_VER** (unix socket, fsync=off, synchronous_commit=off, full_page_writes=off). Stores and clients share the same $CPUS cores with the nodes. wrk, $CONNS connections, ${DURATION}s per run, medians of $ROUNDS interleaved rounds."
  echo
  echo "| node | read req/s | read p99 µs | vs local | write req/s | write p99 µs | vs local |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  echo "| local | $LR | $(med local read 5) | 1.00 | $LW | $(med local write 5) | 1.00 |"
  echo "| cluster, Redis | $RR | $(med redis read 5) | $(ratio "$RR" "$LR") | $RW | $(med redis write 5) | $(ratio "$RW" "$LW") |"
  echo "| cluster, PostgreSQL | $PR | $(med pg read 5) | $(ratio "$PR" "$LR") | $PW | $(med pg write 5) | $(ratio "$PW" "$LW") |"
  echo
  echo "Targets: owner-local read ≥ 0.9× local; write-through to Redis ≥ 0.5×, to PostgreSQL ≥ 0.3×. Errors or non-2xx over all rounds: local $(errs local), Redis $(errs redis), PostgreSQL $(errs pg)."
  echo
  echo "![cluster throughput](img/cluster.png)"
  echo
  echo "**Failover.** A second node (node 2) on the same store gets the first request for each of $FAILOVER sessions node 1 created and it has never seen: it loads the session, takes it over with a fenced update, announces the move and answers with the re-issued id. One request at a time from a Python client on a kept-alive connection; the same client reading sessions a node already owns shows the client's own share."
  echo
  echo "| | p50 µs | p99 µs | max µs | answers not 200 with a node-2 cookie |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  echo "| takeover, Redis | $FO_R50 | $FO_R99 | $FO_RMAX | $FO_RBAD |"
  echo "| takeover, PostgreSQL | $FO_P50 | $FO_P99 | $FO_PMAX | $FO_PBAD |"
  echo "| owned read, same client | $FO_L50 | $FO_L99 | $FO_LMAX | – |"
  echo
  echo "Target: p99 ≤ 10 ms."
  echo
  echo "**Failover after a stop.** Two nodes per case, default \`store_timeout\` (2 s). Node 1 creates $STOPPED sessions, then its master is stopped: \`kill -9\` (a crash: its children die with it) or \`SIGTERM\` (a clean stop: it drains and exits). At once a Python client on node 2 reads each session in turn until it answers 200 (the takeover, with a re-issued id), retrying every 10 ms."
  echo
  echo "| store | when_store_down | stop | takeover p50 µs | takeover p99 µs | answers not 200 first | every session served after (ms) |"
  echo "| --- | --- | --- | ---: | ---: | ---: | ---: |"
  while read -r st md hw p50 p99 bad all; do
    echo "| $st | $md | $([ "$hw" = kill ] && echo 'kill -9' || echo 'SIGTERM') | $p50 | $p99 | $bad | $all |"
  done < "$WORK/stops.txt"
  echo
  echo "**Store writes under reads.** save_period=$SAVE_PERIOD s; 1000 sessions read by wrk for ${WRITES_SECONDS}s with nothing changed; every store write counted (\`sessiond_store_writes_total\`)."
  echo
  echo "| store | reads/s | reads per session | store writes | writes per session per minute | bound 60/save_period |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  echo "| Redis | $W_RRPS | $W_RREADS | $W_R | $W_RPM | $(( 60 / SAVE_PERIOD )) |"
  echo "| PostgreSQL | $W_PRPS | $W_PREADS | $W_P | $W_PPM | $(( 60 / SAVE_PERIOD )) |"
  echo
  echo "Every round (node, workload, req/s, p50 µs, p99 µs, errors, non-2xx):"
  echo
  echo '```'
  cat "$WORK/rounds.txt"
  echo '```'
  echo "<!-- cluster:end -->"
} > "$WORK/section.md"

cat "$WORK/section.md"
# shellcheck source=benches/doc_section.sh
source "$ROOT/benches/doc_section.sh"
write_section cluster "Cluster mode" "$WORK/section.md" "$DOC"
echo "cluster: wrote $DOC and $IMG/cluster.png in $SECONDS s" >&2
