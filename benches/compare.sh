#!/usr/bin/env bash
# sessiond beside nginx (`return 200`) and Redis, in one run on one machine.
#
#   bash benches/compare.sh                      # full run (about 10 minutes on 2 cores)
#   DURATION=2 ROUNDS=1 bash benches/compare.sh  # checks that the script works; not results
#
# Installs nginx, redis-server, wrk and gnuplot from Debian if missing, builds
# sessiond in release mode, runs all three servers on loopback and measures
# them with the same clients and connection counts: wrk for HTTP (sessiond,
# nginx), redis-benchmark for Redis. Every plot puts sessiond and its peers on
# the same axes, from this run:
#
#   1. main table   nginx, sessiond and Redis all up; ROUNDS interleaved rounds
#                   of DURATION s per workload, medians reported.
#   2. connections  req/s and p99 vs concurrent connections (CONN_LIST), same
#                   servers, SHORT s per point          -> throughput_conns.png
#   3. processes    req/s vs 1..4 server processes (PROC_LIST): sessiond
#                   max_procs, nginx worker_processes, Redis --io-threads
#                                                        -> throughput_procs.png
#   4. locks        sessiond req/s vs max_locks (LOCK_LIST); nginx and Redis as
#                   reference lines (main table medians) -> throughput_locks.png
#   5. fill         new sessions/s and memory while filling to FILL sessions in
#                   FILL_BUCKETS steps: sessiond over HTTP (POST + PUT of one
#                   256 B value) and Redis (SET of a new 256 B key with EX)
#                                                        -> fill_rate.png, memory.png
#   6. region scale sessiond-bench-scale, region API only; no peer has such a
#                   layer, so it is printed as a table and not plotted.
#   7. cluster      benches/cluster.sh: cluster mode over Redis and PostgreSQL
#                   vs the same node without [cluster]: owner-local reads,
#                   written-through writes, failover latency, store writes
#                   under reads (its own section)  -> cluster.png
#
# Writes the results between the markers in docs/benchmarks.md (DOC) and the
# plots under docs/img/ (IMG). Everything it starts is stopped on exit.
# Traffic goes only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SHORT=${SHORT:-$(( DURATION / 2 > 2 ? DURATION / 2 : 2 ))}  # seconds per sweep point
CONNS=${CONNS:-64}
SESSIONS=${SESSIONS:-10000}
CONN_LIST=${CONN_LIST:-"1 4 16 64 256"}
PROC_LIST=${PROC_LIST:-"1 2 3 4"}
LOCK_LIST=${LOCK_LIST:-"1 4 16 64"}
FILL=${FILL:-400000}
FILL_BUCKETS=${FILL_BUCKETS:-8}
DOC=${DOC:-docs/benchmarks.md}   # where the results section goes
IMG=${IMG:-docs/img}
CPUS=$(nproc)
WORK=$(mktemp -d /tmp/sessiond-compare.XXXXXX)
export WRK_DIR="$ROOT/benches/wrk"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v redis-server >/dev/null || need+=(redis-server)
command -v wrk >/dev/null || need+=(wrk)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} ..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "building sessiond (release) ..." >&2
cargo build --release --quiet --bin sessiond --bin sessiond-bench-scale

SD_PORT=18181 NG_PORT=18182 RD_PORT=18183
GW_PORT=18184 UP_PORT=18185 PX_PORT=18186 AU_PORT=18187
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
min() { echo $(( $1 < $2 ? $1 : $2 )); }

# --- servers -----------------------------------------------------------------

sd_config() { # $1 = max_procs, $2 = max_locks, $3 = max_sessions, $4 = "churn" to add that context
  rm -rf "$WORK/sd"
  cat > "$WORK/sd.toml" <<EOF
listen = "127.0.0.1:$SD_PORT"
data_dir = "$WORK/sd"
max_procs = $1
log_level = "warn"
[sessions]
max_sessions = $3
max_values_per_session = 4
max_value_size = 256
max_locks = $2
timeout = 3600
EOF
  if [ "${4:-}" = churn ]; then
    cat >> "$WORK/sd.toml" <<EOF
[[contexts]]
name = "churn"
max_sessions = 100000
when_full = "evict-oldest"
EOF
  fi
}
start_sessiond() { # $1 = max_procs, $2 = max_locks: the benchmark setup, $SESSIONS sessions prepared
  sd_config "$1" "$2" 20000 churn
  "$ROOT/target/release/sessiond" --config "$WORK/sd.toml" 2>"$WORK/sd.log" &
  SD_PID=$!
  PIDS+=("$SD_PID")
  wait_port $SD_PORT
  python3 "$ROOT/benches/prepare_sessions.py" 127.0.0.1 $SD_PORT "$SESSIONS" > "$WORK/ids.txt"
}
stop_sessiond() { kill "$SD_PID"; wait "$SD_PID" 2>/dev/null || true; }

start_nginx() { # $1 = worker_processes
  mkdir -p "$WORK/ng"
  cat > "$WORK/ng/nginx.conf" <<EOF
worker_processes $1;
pid $WORK/ng/nginx.pid;
error_log $WORK/ng/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/ng; proxy_temp_path $WORK/ng; fastcgi_temp_path $WORK/ng;
  uwsgi_temp_path $WORK/ng; scgi_temp_path $WORK/ng;
  server { listen 127.0.0.1:$NG_PORT; location / { return 200 'ok'; } }
}
EOF
  "$NGINX" -c "$WORK/ng/nginx.conf" -p "$WORK/ng" &
  NG_PID=$!; PIDS+=("$NG_PID"); wait_port $NG_PORT
}
stop_nginx() { kill "$NG_PID"; wait "$NG_PID" 2>/dev/null || true; }

# Redis with persistence off. $1 = --io-threads (1 = the main thread only;
# reads are threaded too when > 1). $2 = "prefill": SET key:000000000000 ..
# for $SESSIONS keys with 256-byte values, the keys redis-benchmark -r picks
# from, so every GET hits.
start_redis() {
  redis-server --port $RD_PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --io-threads "$1" --io-threads-do-reads yes --logfile "$WORK/redis.log" &
  RD_PID=$!; PIDS+=("$RD_PID"); wait_port $RD_PORT
  if [ "${2:-}" = prefill ]; then
    python3 - "$SESSIONS" <<'PY' | redis-cli -p $RD_PORT --pipe >/dev/null
import sys
n, v, out = int(sys.argv[1]), b"v" * 256, sys.stdout.buffer
for i in range(n):
    k = b"key:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$256\r\n%s\r\n" % (len(k), k, v))
PY
  fi
}
stop_redis() { kill "$RD_PID"; wait "$RD_PID" 2>/dev/null || true; }

# --- clients -----------------------------------------------------------------

# One wrk run -> "rps p50_us p99_us errors non2xx". wrk needs a thread per
# connection at least, so it uses min(cores, connections) threads.
run_wrk() { # $1 = script, $2 = url, [$3 = seconds], [$4 = connections]
  local c=${4:-$CONNS}
  IDS_FILE="$WORK/ids.txt" wrk -t"$(min "$CPUS" "$c")" -c"$c" -d"${3:-$DURATION}"s -s "$WRK_DIR/$1" "$2" > "$WORK/wrk.out" 2>&1
  local line; line=$(grep '^RESULT' "$WORK/wrk.out" || true)
  [ -n "$line" ] || { cat "$WORK/wrk.out" >&2; echo "wrk produced no RESULT" >&2; exit 1; }
  local rps p50 p99 err non2xx
  rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$line"); p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line"); err=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")
  non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")
  echo "$rps $p50 $p99 $err $non2xx"
}
# One redis-benchmark run -> "rps p50_us p99_us". $1 = get|set or "custom",
# $2 = connections, $3 = requests, then for custom the command and its -r.
# One client thread: with --threads, redis-benchmark stops only when its
# 250 ms throughput timer fires, so a run's time is rounded up to a multiple
# of 250 ms and short runs under-report (a 0.6 s run by up to 40 %).
redis_bench() {
  local t=$1 c=$2 n=$3; shift 3
  local args=(-p $RD_PORT -c "$c" -n "$n" --csv)
  if [ "$t" = custom ]; then args+=(-r "$2" $1); else args+=(-d 256 -r "$SESSIONS" -t "$t"); fi
  redis-benchmark "${args[@]}" > "$WORK/redis.csv" 2>/dev/null
  # CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  awk -F'","' 'NR==2 {printf "%.0f %.0f %.0f\n", $2, $5 * 1000, $7 * 1000}' "$WORK/redis.csv"
}
# redis-benchmark counts requests, not seconds: a 10,000-request run sets the
# count for about $3 seconds. -> "rps p50_us p99_us - -" (it reports no errors).
run_redis() { # $1 = get|set, $2 = connections, $3 = seconds
  local rps n
  read -r rps _ <<<"$(redis_bench "$1" "$2" 10000)"
  n=$(( rps * $3 )); [ "$n" -ge 10000 ] || n=10000
  echo "$(redis_bench "$1" "$2" "$n") - -"
}

# --- 1. main table -----------------------------------------------------------

echo "[${SECONDS}s] == main table: nginx ($CPUS workers), sessiond (max_procs=$CPUS, max_locks=16), Redis (io-threads 1); $ROUNDS interleaved rounds of ${DURATION}s ==" >&2
start_nginx "$CPUS"
start_sessiond "$CPUS" 16
start_redis 1 prefill
# All three servers stay up; each round measures every workload once, so slow
# phases of this shared VM hit all of them alike. The table shows medians.
SD=http://127.0.0.1:$SD_PORT NG=http://127.0.0.1:$NG_PORT
: > "$WORK/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  echo "nginx $(run_wrk plain.lua "$NG/")" >> "$WORK/rounds.txt"
  echo "floor $(run_wrk plain.lua "$SD/healthz")" >> "$WORK/rounds.txt"
  echo "read $(run_wrk read.lua "$SD")" >> "$WORK/rounds.txt"
  echo "write $(run_wrk write.lua "$SD")" >> "$WORK/rounds.txt"
  echo "create $(run_wrk create.lua "$SD")" >> "$WORK/rounds.txt"
  echo "redis_get $(run_redis get "$CONNS" "$DURATION")" >> "$WORK/rounds.txt"
  echo "redis_set $(run_redis set "$CONNS" "$DURATION")" >> "$WORK/rounds.txt"
done
median() { # $1 = workload, $2 = column (2 rps, 3 p50, 4 p99)
  awk -v w="$1" -v c="$2" '$1==w {print $c}' "$WORK/rounds.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
errors() { awk -v w="$1" '$1==w {s+=$5} END {print s+0}' "$WORK/rounds.txt"; }
N_RPS=$(median nginx 2) N_P50=$(median nginx 3) N_P99=$(median nginx 4) N_ERR=$(errors nginx)
F_RPS=$(median floor 2) F_P50=$(median floor 3) F_P99=$(median floor 4) F_ERR=$(errors floor)
R_RPS=$(median read 2) R_P50=$(median read 3) R_P99=$(median read 4) R_ERR=$(errors read)
W_RPS=$(median write 2) W_P50=$(median write 3) W_P99=$(median write 4) W_ERR=$(errors write)
C_RPS=$(median create 2) C_P50=$(median create 3) C_P99=$(median create 4) C_ERR=$(errors create)
RG_RPS=$(median redis_get 2) RG_P50=$(median redis_get 3) RG_P99=$(median redis_get 4)
RS_RPS=$(median redis_set 2) RS_P50=$(median redis_set 3) RS_P99=$(median redis_set 4)
RSS_LINES=""
for p in $(pgrep -P "$SD_PID" -f 'sessiond: worker' || true); do
  rss=$(awk '/^Rss:/{r=$2} /^Private_Clean:/{pc=$2} /^Private_Dirty:/{pd=$2} END{printf "%d %d", r, pc+pd}' "/proc/$p/smaps_rollup")
  RSS_LINES+="$p $rss"$'\n'
done

# --- 1b. gateway ---------------------------------------------------------------
# sessiond's gateway forwarding with a session, against nginx proxy_pass with
# no auth, and nginx auth_request (to sessiond's /.sessiond/auth) + proxy_pass.
# Same upstream for all three: an nginx `return 200` on its own port.
stop_sessiond
echo "[${SECONDS}s] == gateway: sessiond gateway vs nginx proxy_pass vs nginx auth_request + proxy_pass; $ROUNDS interleaved rounds ==" >&2
mkdir -p "$WORK/gx"
cat > "$WORK/gx/nginx.conf" <<NGINX
worker_processes $CPUS;
pid $WORK/gx/nginx.pid;
error_log $WORK/gx/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/gx; proxy_temp_path $WORK/gx; fastcgi_temp_path $WORK/gx;
  uwsgi_temp_path $WORK/gx; scgi_temp_path $WORK/gx;
  upstream app { server 127.0.0.1:$UP_PORT; keepalive 256; }
  upstream gw  { server 127.0.0.1:$GW_PORT; keepalive 256; }
  # The application: one small answer.
  server { listen 127.0.0.1:$UP_PORT; location / { return 200 'ok'; } }
  # nginx proxy_pass, no authentication at all.
  server { listen 127.0.0.1:$PX_PORT;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  # nginx auth_request to sessiond's forward-auth, then proxy_pass (docs/gateway-proxies.md).
  server { listen 127.0.0.1:$AU_PORT;
    location = /_sessiond_auth { internal; proxy_pass http://gw/.sessiond/auth; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri; proxy_set_header X-Forwarded-Uri \$request_uri; }
    location / { auth_request /_sessiond_auth;
      auth_request_set \$sessiond_user \$upstream_http_x_sessiond_user;
      proxy_set_header X-Sessiond-User \$sessiond_user;
      proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGINX
"$NGINX" -c "$WORK/gx/nginx.conf" -p "$WORK/gx" &
GX_PID=$!; PIDS+=("$GX_PID"); wait_port $UP_PORT; wait_port $PX_PORT; wait_port $AU_PORT
python3 -W ignore -c "import crypt; print('bench:' + crypt.crypt('bench', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1<<4)))" > "$WORK/users"
head -c 32 /dev/urandom | base64 > "$WORK/gw.secret"; chmod 600 "$WORK/gw.secret"
sd_config "$CPUS" 16 20000
cat >> "$WORK/sd.toml" <<GW
[gateway]
listen = "127.0.0.1:$GW_PORT"
verifier = "htpasswd:$WORK/users"
secret_file = "$WORK/gw.secret"
[[gateway.upstreams]]
name = "app"
url = "http://127.0.0.1:$UP_PORT"
GW
"$ROOT/target/release/sessiond" --config "$WORK/sd.toml" 2>"$WORK/sd.log" &
SD_PID=$!; PIDS+=("$SD_PID"); wait_port $SD_PORT; wait_port $GW_PORT
COOKIE=$(curl -s -D - -o /dev/null -H 'content-type: application/json' -d '{"user":"bench","password":"bench"}' \
  "http://127.0.0.1:$GW_PORT/.sessiond/login" | sed -n 's/^set-cookie: \([^;]*\).*/\1/ip' | tr -d '\r')
[ -n "$COOKIE" ] || { cat "$WORK/sd.log" >&2; echo "gateway login failed" >&2; exit 1; }
export COOKIE
for w in "http://127.0.0.1:$GW_PORT/app" "http://127.0.0.1:$PX_PORT/app" "http://127.0.0.1:$AU_PORT/app"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "cookie: $COOKIE" "$w")
  [ "$code" = 200 ] || { echo "gateway setup: $w answered $code" >&2; exit 1; }
done
: > "$WORK/gw_rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  echo "gateway $(run_wrk gateway.lua "http://127.0.0.1:$GW_PORT/app")" >> "$WORK/gw_rounds.txt"
  echo "proxy $(run_wrk gateway.lua "http://127.0.0.1:$PX_PORT/app")" >> "$WORK/gw_rounds.txt"
  echo "authreq $(run_wrk gateway.lua "http://127.0.0.1:$AU_PORT/app")" >> "$WORK/gw_rounds.txt"
done
gmedian() { awk -v w="$1" -v c="$2" '$1==w {print $c}' "$WORK/gw_rounds.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
gerrors() { awk -v w="$1" '$1==w {s+=$5+$6} END {print s+0}' "$WORK/gw_rounds.txt"; }
G_RPS=$(gmedian gateway 2) G_P50=$(gmedian gateway 3) G_P99=$(gmedian gateway 4) G_ERR=$(gerrors gateway)
P_RPS=$(gmedian proxy 2) P_P50=$(gmedian proxy 3) P_P99=$(gmedian proxy 4) P_ERR=$(gerrors proxy)
A_RPS=$(gmedian authreq 2) A_P50=$(gmedian authreq 3) A_P99=$(gmedian authreq 4) A_ERR=$(gerrors authreq)
kill "$GX_PID"; wait "$GX_PID" 2>/dev/null || true
stop_sessiond
start_sessiond "$CPUS" 16

# --- 2. connections ----------------------------------------------------------

echo "[${SECONDS}s] == connections: $CONN_LIST (${SHORT}s each) ==" >&2
# conns.dat: conns, then req/s and p99 us for sessiond read, sessiond write,
# nginx, Redis GET, Redis SET (columns 2,3 / 4,5 / 6,7 / 8,9 / 10,11).
: > "$WORK/conns.dat"
for c in $CONN_LIST; do
  row="$c"
  for w in "wrk read.lua $SD" "wrk write.lua $SD" "wrk plain.lua $NG/" "redis get" "redis set"; do
    set -- $w
    if [ "$1" = wrk ]; then r=$(run_wrk "$2" "$3" "$SHORT" "$c"); else r=$(run_redis "$2" "$c" "$SHORT"); fi
    read -r rps _ p99 _ <<<"$r"
    row+=" $rps $p99"
  done
  echo "$row" >> "$WORK/conns.dat"
done
stop_sessiond; stop_nginx; stop_redis

# --- 3. processes ------------------------------------------------------------

echo "[${SECONDS}s] == processes: $PROC_LIST on $CPUS cores (${SHORT}s each) ==" >&2
# procs.dat: N, req/s of sessiond read, sessiond write, nginx, Redis GET, Redis SET.
: > "$WORK/procs.dat"
for n in $PROC_LIST; do
  start_nginx "$n"; start_sessiond "$n" 16; start_redis "$n" prefill
  read -r rd _ <<<"$(run_wrk read.lua "$SD" "$SHORT")"
  read -r wr _ <<<"$(run_wrk write.lua "$SD" "$SHORT")"
  read -r ng _ <<<"$(run_wrk plain.lua "$NG/" "$SHORT")"
  read -r rg _ <<<"$(run_redis get "$CONNS" "$SHORT")"
  read -r rs _ <<<"$(run_redis set "$CONNS" "$SHORT")"
  echo "$n $rd $wr $ng $rg $rs" >> "$WORK/procs.dat"
  stop_sessiond; stop_nginx; stop_redis
done

# --- 4. locks ----------------------------------------------------------------

echo "[${SECONDS}s] == max_locks: $LOCK_LIST (${SHORT}s each) ==" >&2
: > "$WORK/locks.dat"
for locks in $LOCK_LIST; do
  start_sessiond "$CPUS" "$locks"
  read -r rd _ <<<"$(run_wrk read.lua "$SD" "$SHORT")"
  read -r wr _ <<<"$(run_wrk write.lua "$SD" "$SHORT")"
  echo "$locks $rd $wr" >> "$WORK/locks.dat"
  stop_sessiond
done

# --- 5. fill and memory ------------------------------------------------------

PER_THREAD=$(( FILL / FILL_BUCKETS / CPUS ))
BUCKET=$(( PER_THREAD * CPUS ))
echo "[${SECONDS}s] == fill: $FILL_BUCKETS buckets of $BUCKET new sessions, sessiond (HTTP) and Redis interleaved ==" >&2
sd_config "$CPUS" 16 $(( BUCKET * FILL_BUCKETS ))
"$ROOT/target/release/sessiond" --config "$WORK/sd.toml" 2>"$WORK/sd.log" &
SD_PID=$!; PIDS+=("$SD_PID"); wait_port $SD_PORT
start_redis 1
REGION="$WORK/sd/contexts/default/sessions.region"
REGION_BYTES=$(stat -c %s "$REGION")
# Proportional anonymous memory (heap, stacks) of the given processes, bytes.
# Proportional, so pages a forked worker still shares with the master count once.
pss_anon() { local p kb=0; for p in "$@"; do kb=$(( kb + $(awk '/^Pss_Anon:/{print $2}' "/proc/$p/smaps_rollup") )); done; echo $(( kb * 1024 )); }
sd_live() {
  python3 -c 'import sys, urllib.request
for l in urllib.request.urlopen(sys.argv[1]).read().decode().splitlines():
    if l.startswith("sessiond_sessions_live{context=\"default\"}"): print(l.split()[1])' "$SD/metrics"
}
# sessiond memory: region pages resident in the page cache (the region is a
# shared file mapping) + anonymous memory of master, workers and reaper.
sd_mem() { echo "$(fincore --bytes --noheadings --output RES "$REGION" | tr -d ' ') $(pss_anon "$SD_PID" $(pgrep -P "$SD_PID"))"; }
# Redis memory: its allocator's used_memory, and the process's anonymous memory.
rd_mem() { echo "$(redis-cli -p $RD_PORT info memory | tr -d '\r' | awk -F: '$1=="used_memory"{print $2}') $(pss_anon "$RD_PID")"; }
# A Redis key as long as a sessiond id (36 characters), a 256-byte value and
# the same one-hour timeout: SET sess:AAAAAAAAAAAAAAAAAA:<12 digits> v.. EX 3600.
RD_FILL="SET sess:AAAAAAAAAAAAAAAAAA:__rand_int__ $(printf 'v%.0s' $(seq 256)) EX 3600"
# fill.dat columns: bucket, sessiond live, sessiond sessions/s, region resident B,
# sessiond anon B, Redis keys, Redis SETs/s, Redis used_memory B, Redis anon B.
echo "0 $(sd_live) - $(sd_mem) $(redis-cli -p $RD_PORT dbsize) - $(rd_mem)" > "$WORK/fill.dat"
for b in $(seq 1 "$FILL_BUCKETS"); do
  rm -rf "$WORK/fill"; mkdir "$WORK/fill"
  FILL_DIR="$WORK/fill" FILL_THREADS=$CPUS FILL_PER_THREAD=$PER_THREAD \
    wrk -t"$CPUS" -c"$CONNS" -d60s -s "$WRK_DIR/fill.lua" "$SD" > "$WORK/wrk.out" 2>&1
  line=$(grep '^FILL' "$WORK/wrk.out" || true)
  if [ -z "$line" ] || ! grep -q "sessions=$BUCKET .*bad=0$" <<<"$line"; then
    cat "$WORK/wrk.out" >&2; echo "sessiond fill bucket $b failed" >&2; exit 1
  fi
  sd_rate=$(sed -E 's/.*rate=([0-9]+).*/\1/' <<<"$line")
  read -r rd_rate _ <<<"$(redis_bench custom "$CONNS" "$BUCKET" "$RD_FILL" 2000000000)"
  echo "$b $(sd_live) $sd_rate $(sd_mem) $(redis-cli -p $RD_PORT dbsize) $rd_rate $(rd_mem)" >> "$WORK/fill.dat"
done
stop_sessiond; stop_redis

# --- 6. region scale (region API, no peer) -----------------------------------

echo "[${SECONDS}s] == region scale: 1,000,000 sessions (4 x 256 B), region API ==" >&2
"$ROOT/target/release/sessiond-bench-scale" --sessions 1000000 --bucket 100000 > "$WORK/scale.csv"
grep '^fill,' "$WORK/scale.csv" | tr ',' ' ' | cut -d' ' -f2,3 > "$WORK/scale_fill.dat"
grep '^reap,' "$WORK/scale.csv" | tr ',' ' ' | cut -d' ' -f2,3 > "$WORK/scale_reap.dat"
REAP_ALL=$(grep '^reap_expired,' "$WORK/scale.csv" | cut -d, -f2,3)

# --- plots -------------------------------------------------------------------

# Same look in every plot: sessiond solid, peers dashed; HTTP and RESP named.
L_SDR='title "sessiond read (HTTP GET attribute)" lw 2 pt 7 lc rgb "#1f77b4"'
L_SDW='title "sessiond write (HTTP PUT 256 B)" lw 2 pt 5 lc rgb "#2ca02c"'
L_NG='title "nginx return 200 (HTTP)" lw 2 dt 2 pt 9 lc rgb "#7f7f7f"'
L_RG='title "Redis GET 256 B (RESP)" lw 2 dt 4 pt 11 lc rgb "#d62728"'
L_RS='title "Redis SET 256 B (RESP)" lw 2 dt 4 pt 13 lc rgb "#ff7f0e"'
xtics_list() { echo "($(tr ' ' '\n' <<<"$*" | grep . | paste -sd,))"; }
maxof() { tr ' ' '\n' <<<"$*" | grep . | sort -n | tail -1; }
mkdir -p "$IMG"
gnuplot <<EOF
set terminal pngcairo size 1150,520 noenhanced font ",10"
set grid
set key outside right top vertical Left reverse spacing 1.3
set yrange [0:*]
set format y "%.0f"

set output "$IMG/throughput_procs.png"
set title "Requests/s vs server processes or threads N, $CONNS connections, on $CPUS cores (N > $CPUS oversubscribes them)"
set xlabel "N: sessiond max_procs, nginx worker_processes, Redis --io-threads"
set ylabel "requests/s"
set xrange [0.5:$(awk 'END{print $1 + 0.5}' "$WORK/procs.dat")]
set xtics 1; set format x "%.0f"
plot "$WORK/procs.dat" u 1:2 w lp $L_SDR, "" u 1:3 w lp $L_SDW, "" u 1:4 w lp $L_NG, "" u 1:5 w lp $L_RG, "" u 1:6 w lp $L_RS

set output "$IMG/throughput_locks.png"
set title "sessiond requests/s vs max_locks (max_procs=$CPUS, $CONNS connections); peers have no lock setting"
set xlabel "sessiond max_locks"
set logscale x 2; set xrange [0.7:$(maxof $LOCK_LIST)*1.4]; set xtics $(xtics_list $LOCK_LIST)
plot "$WORK/locks.dat" u 1:2 w lp $L_SDR, "" u 1:3 w lp $L_SDW, \
  $N_RPS w l lw 2 dt 2 lc rgb "#7f7f7f" title "nginx return 200: reference, main-table median", \
  $RG_RPS w l lw 2 dt 4 lc rgb "#d62728" title "Redis GET: reference, main-table median", \
  $RS_RPS w l lw 2 dt 4 lc rgb "#ff7f0e" title "Redis SET: reference, main-table median"

set terminal pngcairo size 1150,880 noenhanced font ",10"
set output "$IMG/throughput_conns.png"
set multiplot layout 2,1
set xtics $(xtics_list $CONN_LIST); set xrange [0.7:$(maxof $CONN_LIST)*1.4]
set xlabel "concurrent connections (wrk -c / redis-benchmark -c)"
set title "Requests/s vs connections (sessiond max_procs=$CPUS, nginx $CPUS workers, Redis io-threads 1)"
set ylabel "requests/s"
plot "$WORK/conns.dat" u 1:2 w lp $L_SDR, "" u 1:4 w lp $L_SDW, "" u 1:6 w lp $L_NG, "" u 1:8 w lp $L_RG, "" u 1:10 w lp $L_RS
set title "p99 latency vs connections (same runs)"
set ylabel "p99 latency, ms (log scale)"
set logscale y 10; set yrange [*:*]; set format y "%g"
plot "$WORK/conns.dat" u 1:(\$3/1000) w lp $L_SDR, "" u 1:(\$5/1000) w lp $L_SDW, "" u 1:(\$7/1000) w lp $L_NG, "" u 1:(\$9/1000) w lp $L_RG, "" u 1:(\$11/1000) w lp $L_RS
unset multiplot
unset logscale; set yrange [0:*]; set format y "%.0f"; set xrange [0:*]; set xtics autofreq

set terminal pngcairo size 900,520 noenhanced font ",10"
set datafile missing "-"
set output "$IMG/fill_rate.png"
set key inside right bottom vertical Right noreverse box opaque
set title "New sessions/s while filling, $CONNS connections, buckets of $BUCKET"
set xlabel "live sessions / keys at the end of the bucket (thousands)"
set ylabel "new sessions per second"
plot "$WORK/fill.dat" u (\$2/1000):3 w lp title "sessiond: POST session + PUT 256 B value (2 HTTP requests)" lw 2 pt 7 lc rgb "#1f77b4", \
  "" u (\$6/1000):7 w lp title "Redis: SET new key 256 B EX 3600 (1 RESP command)" lw 2 dt 4 pt 13 lc rgb "#ff7f0e"

set output "$IMG/memory.png"
set title "Memory vs live sessions, one 256 B value each (sessiond region preallocated for $(( BUCKET * FILL_BUCKETS )) sessions x 4 values)"
set ylabel "MiB"
set key inside right center
plot "$WORK/fill.dat" u (\$2/1000):((\$4+\$5)/1048576) w lp title "sessiond: region pages resident + anonymous (Pss)" lw 2 pt 7 lc rgb "#1f77b4", \
  "" u (\$6/1000):(\$9/1048576) w lp title "Redis: anonymous (Pss)" lw 2 dt 4 pt 13 lc rgb "#ff7f0e", \
  "" u (\$6/1000):(\$8/1048576) w lp title "Redis: used_memory (INFO)" lw 2 dt 2 pt 11 lc rgb "#d62728"
EOF

# --- results section ---------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
ms() { awk -v u="$1" 'BEGIN{ printf "%.2f", u/1000 }'; }
CMD="bash benches/compare.sh"
[ "$DURATION" = 10 ] && [ "$ROUNDS" = 3 ] || CMD="DURATION=$DURATION ROUNDS=$ROUNDS $CMD"
{
  echo "<!-- compare:begin -->"
  echo "### Run of $(date -u +%Y-%m-%d) (\`$CMD\`, DURATION=${DURATION}s, ROUNDS=$ROUNDS, sweeps ${SHORT}s per point, $CONNS connections)"
  echo
  echo "Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, kernel $(uname -r)."
  echo "sessiond: release build, max_procs=$CPUS, max_locks=16, $SESSIONS sessions each holding one 256-byte value."
  echo "nginx $($NGINX -v 2>&1 | sed 's/.*nginx\///'): \`return 200 'ok'\`, $CPUS workers. Redis $(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/'): persistence off, io-threads 1, $SESSIONS keys of 256 bytes."
  echo "HTTP is measured with wrk (min(cores, connections) threads), Redis with redis-benchmark in one thread (its \`--threads\` mode rounds each run's time up to a multiple of 250 ms); the clients run on the same $CPUS cores as the servers."
  echo
  echo "| workload | ops/s | p50 ms | p99 ms | errors | × nginx | × Redis |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  echo "| sessiond read (GET attribute by cookie) | $R_RPS | $(ms "$R_P50") | $(ms "$R_P99") | $R_ERR | $(ratio "$R_RPS" "$N_RPS") | $(ratio "$R_RPS" "$RG_RPS") (GET) |"
  echo "| sessiond write (PUT 256 B by cookie) | $W_RPS | $(ms "$W_P50") | $(ms "$W_P99") | $W_ERR | $(ratio "$W_RPS" "$N_RPS") | $(ratio "$W_RPS" "$RS_RPS") (SET) |"
  echo "| sessiond create (POST, evict-oldest context) | $C_RPS | $(ms "$C_P50") | $(ms "$C_P99") | $C_ERR | $(ratio "$C_RPS" "$N_RPS") | |"
  echo "| sessiond \`GET /healthz\` (HTTP floor: hyper, routing, metrics; no session) | $F_RPS | $(ms "$F_P50") | $(ms "$F_P99") | $F_ERR | $(ratio "$F_RPS" "$N_RPS") | |"
  echo "| nginx \`return 200 'ok'\` | $N_RPS | $(ms "$N_P50") | $(ms "$N_P99") | $N_ERR | 1.00 | |"
  echo "| redis-benchmark GET 256 B | $RG_RPS | $(ms "$RG_P50") | $(ms "$RG_P99") | | | 1.00 |"
  echo "| redis-benchmark SET 256 B | $RS_RPS | $(ms "$RS_P50") | $(ms "$RS_P99") | | | 1.00 |"
  echo
  echo "**Gateway** (same run; one upstream, an nginx \`return 200\` on its own port; every request carries a logged-in session's cookie; medians of $ROUNDS interleaved rounds of ${DURATION}s, $CONNS connections):"
  echo
  echo "| path to the upstream | req/s | p50 ms | p99 ms | errors + non-2xx | × nginx proxy_pass | × nginx auth_request |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  echo "| sessiond gateway (session lookup, filters, forwarding) | $G_RPS | $(ms "$G_P50") | $(ms "$G_P99") | $G_ERR | $(ratio "$G_RPS" "$P_RPS") | $(ratio "$G_RPS" "$A_RPS") |"
  echo "| nginx \`proxy_pass\`, no authentication | $P_RPS | $(ms "$P_P50") | $(ms "$P_P99") | $P_ERR | 1.00 | $(ratio "$P_RPS" "$A_RPS") |"
  echo "| nginx \`auth_request\` to sessiond \`/.sessiond/auth\` + \`proxy_pass\` | $A_RPS | $(ms "$A_P50") | $(ms "$A_P99") | $A_ERR | $(ratio "$A_RPS" "$P_RPS") | 1.00 |"
  echo
  echo "Targets (issue 10): gateway ≥ 0.8 × nginx proxy_pass, and ≥ 1.5 × the auth_request pair. Rounds (workload, req/s, p50 us, p99 us, errors, non-2xx):"
  echo
  echo '```'
  cat "$WORK/gw_rounds.txt"
  echo '```'
  echo
  echo "Each figure is the median of $ROUNDS interleaved rounds of about ${DURATION}s (wrk errors: the sum; redis-benchmark reports none). Every round (workload, req/s, p50 us, p99 us, errors, non-2xx):"
  echo
  echo '```'
  cat "$WORK/rounds.txt"
  echo '```'
  echo
  echo "Worker memory after the main rounds (kB, from /proc/PID/smaps_rollup): pid, RSS, private (clean+dirty)."
  echo
  echo '```'
  printf '%s' "$RSS_LINES"
  echo '```'
  echo
  echo "#### Against connections"
  echo
  echo "Same servers as the table, ${SHORT}s per point; req/s (p99 ms)."
  echo
  echo "| connections | sessiond read | sessiond write | nginx | Redis GET | Redis SET |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
  awk '{printf "| %d | %d (%.2f) | %d (%.2f) | %d (%.2f) | %d (%.2f) | %d (%.2f) |\n", $1, $2, $3/1000, $4, $5/1000, $6, $7/1000, $8, $9/1000, $10, $11/1000}' "$WORK/conns.dat"
  echo
  echo "![requests/s and p99 vs connections](img/throughput_conns.png)"
  echo
  echo "#### Against server processes"
  echo
  echo "N = sessiond \`max_procs\`, nginx \`worker_processes\`, Redis \`--io-threads\` (with \`--io-threads-do-reads yes\`; 1 is the main thread alone); $CONNS connections, ${SHORT}s per point, req/s. The machine has $CPUS cores, so N above $CPUS oversubscribes them and shares them with the clients."
  echo "Redis scales by threads, not processes: its I/O threads busy-poll for work while the server is loaded, so when they outnumber free cores they take CPU from the main thread; Redis's own \`redis.conf\` suggests I/O threads only on machines with at least 4 cores, leaving one spare."
  echo
  echo "| N | sessiond read | sessiond write | nginx | Redis GET | Redis SET |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
  awk '{printf "| %d | %d | %d | %d | %d | %d |\n", $1, $2, $3, $4, $5, $6}' "$WORK/procs.dat"
  echo
  echo "![requests/s vs server processes](img/throughput_procs.png)"
  echo
  echo "#### Against sessiond max_locks"
  echo
  echo "max_procs=$CPUS, $CONNS connections, ${SHORT}s per point, req/s. nginx and Redis have no such setting; the plot draws their main-table medians as reference lines (nginx $N_RPS, Redis GET $RG_RPS, Redis SET $RS_RPS)."
  echo
  echo "| max_locks | sessiond read | sessiond write |"
  echo "| ---: | ---: | ---: |"
  awk '{printf "| %d | %d | %d |\n", $1, $2, $3}' "$WORK/locks.dat"
  echo
  echo "![requests/s vs max_locks](img/throughput_locks.png)"
  echo
  echo "#### Filling: rate and memory"
  echo
  echo "Both servers fresh, filled in $FILL_BUCKETS interleaved buckets of $BUCKET new sessions at $CONNS connections."
  echo "sessiond (HTTP, \`benches/wrk/fill.lua\`): a session is a POST and a PUT of one 256-byte value, two requests; its region holds $(( BUCKET * FILL_BUCKETS )) sessions of up to 4 values, $REGION_BYTES bytes ($(( REGION_BYTES / (BUCKET * FILL_BUCKETS) )) per session), allocated and resident from the start."
  echo "Redis (RESP, redis-benchmark): a session is one \`SET sess:<18 chars>:<12 digits> <256 bytes> EX 3600\`, a 36-character key like a sessiond id; keys are random in 2·10⁹, so nearly all are new (\`DBSIZE\` counts them)."
  echo "Memory: sessiond = region pages resident in the page cache (\`fincore\`) + anonymous Pss of master, workers and reaper; Redis = anonymous Pss of \`redis-server\`, and its own \`used_memory\`."
  echo
  echo "| bucket | sessiond live | sessiond new/s | sessiond region MiB | sessiond anon MiB | Redis keys | Redis new/s | Redis used_memory MiB | Redis anon MiB |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  awk '{printf "| %d | %d | %s | %.1f | %.1f | %d | %s | %.1f | %.1f |\n", $1, $2, $3, $4/1048576, $5/1048576, $6, $7, $8/1048576, $9/1048576}' "$WORK/fill.dat"
  awk 'NR==1 {s0=$4+$5; r0=$9; u0=$8} END {if ($2 > 0 && $6 > 0) printf "\nBytes per session at the end: sessiond %d (growth since empty: %d), Redis anonymous %d (growth %d), Redis used_memory %d (growth %d).\n", ($4+$5)/$2, ($4+$5-s0)/$2, $9/$6, ($9-r0)/$6, $8/$6, ($8-u0)/$6}' "$WORK/fill.dat"
  echo
  echo "![new sessions/s while filling](img/fill_rate.png)"
  echo "![memory vs live sessions](img/memory.png)"
  echo
  echo "#### Region scale (region API, not plotted)"
  echo
  echo "\`sessiond-bench-scale\` calls the region directly (no HTTP), filling 1,000,000 sessions (4 × 256 B) in buckets of 100k: creates/s per bucket, then a reaper sweep with nothing expired (µs). Neither peer has a layer to compare it with, so these figures have no plot."
  echo
  echo '```'
  paste -d' ' "$WORK/scale_fill.dat" "$WORK/scale_reap.dat" | awk '{printf "%8d live  create %9d/s  sweep %6d us\n", $1, $2, $4}'
  echo "sweep that frees every session: $REAP_ALL (freed,us)"
  echo '```'
  echo
  echo "The script took $(( SECONDS / 60 )) min $(( SECONDS % 60 )) s."
  echo "<!-- compare:end -->"
} > "$WORK/section.md"

cat "$WORK/section.md"
# shellcheck source=benches/doc_section.sh
source "$ROOT/benches/doc_section.sh"
write_section compare "sessiond vs nginx vs Redis (benches/compare.sh)" "$WORK/section.md" "$DOC"
echo "wrote $DOC and $IMG/*.png in $SECONDS s" >&2

# --- 7. cluster mode (same run; its own section and plot) ------------------------
cleanup; trap - EXIT
DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS SESSIONS=$SESSIONS DOC=$DOC IMG=$IMG bash "$ROOT/benches/cluster.sh"
