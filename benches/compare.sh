#!/usr/bin/env bash
# sessiond against nginx (`return 200`) and Redis, in one run on one machine.
#
#   bash benches/compare.sh                     # full run (about 6 minutes): docs/benchmarks.md section + plots
#   DURATION=5 ROUNDS=1 bash benches/compare.sh # a shorter run
#
# Installs nginx, redis-server, wrk and gnuplot from Debian if missing, builds
# sessiond in release mode, starts all three servers on loopback, measures
# them with the same connection count, and writes the results between the
# markers in docs/benchmarks.md and the plots under docs/img/. Everything it
# starts is stopped on exit. Traffic goes only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SESSIONS=${SESSIONS:-10000}
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
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

start_sessiond() { # $1 = max_procs, $2 = max_locks
  rm -rf "$WORK/sd"
  cat > "$WORK/sd.toml" <<EOF
listen = "127.0.0.1:$SD_PORT"
data_dir = "$WORK/sd"
max_procs = $1
log_level = "warn"
[sessions]
max_sessions = 20000
max_values_per_session = 4
max_value_size = 256
max_locks = $2
timeout = 3600
[[contexts]]
name = "churn"
max_sessions = 100000
when_full = "evict-oldest"
EOF
  "$ROOT/target/release/sessiond" --config "$WORK/sd.toml" 2>"$WORK/sd.log" &
  SD_PID=$!
  PIDS+=("$SD_PID")
  wait_port $SD_PORT
  python3 "$ROOT/benches/prepare_sessions.py" 127.0.0.1 $SD_PORT "$SESSIONS" > "$WORK/ids.txt"
}
stop_sessiond() { kill "$SD_PID"; wait "$SD_PID" 2>/dev/null || true; }

# One wrk run -> "rps p50_us p99_us errors"
run_wrk() { # $1 = script, $2 = url, [$3 = duration]
  IDS_FILE="$WORK/ids.txt" wrk -t"$CPUS" -c"$CONNS" -d"${3:-$DURATION}"s -s "$WRK_DIR/$1" "$2" > "$WORK/wrk.out" 2>&1
  local line; line=$(grep '^RESULT' "$WORK/wrk.out" || true)
  [ -n "$line" ] || { cat "$WORK/wrk.out" >&2; echo "wrk produced no RESULT" >&2; exit 1; }
  local rps p50 p99 err non2xx
  rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$line"); p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line"); err=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")
  non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")
  echo "$rps $p50 $p99 $err $non2xx"
}

echo "== nginx return 200 ($CPUS workers) and sessiond (max_procs=$CPUS, max_locks=16), $ROUNDS interleaved rounds ==" >&2
mkdir -p "$WORK/ng"
cat > "$WORK/ng/nginx.conf" <<EOF
worker_processes $CPUS;
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
start_sessiond "$CPUS" 16
# Both servers stay up; each round measures every workload once, so slow
# phases of this shared VM hit all of them alike. The table shows medians.
: > "$WORK/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  for w in "nginx plain.lua http://127.0.0.1:$NG_PORT/" \
           "floor plain.lua http://127.0.0.1:$SD_PORT/healthz" \
           "read read.lua http://127.0.0.1:$SD_PORT" \
           "write write.lua http://127.0.0.1:$SD_PORT" \
           "create create.lua http://127.0.0.1:$SD_PORT"; do
    set -- $w
    echo "$1 $(run_wrk "$2" "$3")" >> "$WORK/rounds.txt"
  done
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
RSS_LINES=""
for p in $(pgrep -P "$SD_PID" -f 'sessiond: worker' || true); do
  rss=$(awk '/^Rss:/{r=$2} /^Private_Clean:/{pc=$2} /^Private_Dirty:/{pd=$2} END{printf "%d %d", r, pc+pd}' "/proc/$p/smaps_rollup")
  RSS_LINES+="$p $rss"$'\n'
done
stop_sessiond
kill "$NG_PID"; wait "$NG_PID" 2>/dev/null || true

echo "== redis-server (persistence off) ==" >&2
redis-server --port $RD_PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize no --logfile "$WORK/redis.log" &
RD_PID=$!; PIDS+=("$RD_PID"); wait_port $RD_PORT
N_REQ=$(( 40000 * DURATION ))
redis-benchmark -p $RD_PORT -c "$CONNS" -n "$N_REQ" -d 256 -r "$SESSIONS" -t set,get --threads "$CPUS" --csv > "$WORK/redis.csv" 2>/dev/null
kill "$RD_PID"; wait "$RD_PID" 2>/dev/null || true
# CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
redis_field() { awk -F'","' -v t="$1" -v f="$2" '{gsub(/"/,"",$1); gsub(/"/,"",$NF)} $1==t {print $f}' "$WORK/redis.csv"; }
RS_RPS=$(redis_field SET 2 | cut -d. -f1); RS_P50=$(redis_field SET 5); RS_P99=$(redis_field SET 7)
RG_RPS=$(redis_field GET 2 | cut -d. -f1); RG_P50=$(redis_field GET 5); RG_P99=$(redis_field GET 7)

echo "== scaling: max_procs x max_locks (read, ${DURATION}s/2 each) ==" >&2
SHORT=$(( DURATION / 2 > 2 ? DURATION / 2 : 3 ))
: > "$WORK/procs.dat"; : > "$WORK/locks.dat"
for procs in $(printf '%s\n' 1 2 "$CPUS" | sort -nu); do
  start_sessiond "$procs" 16
  read -r rps _ <<<"$(run_wrk read.lua "http://127.0.0.1:$SD_PORT" "$SHORT")"
  read -r wrps _ <<<"$(run_wrk write.lua "http://127.0.0.1:$SD_PORT" "$SHORT")"
  echo "$procs $rps $wrps" >> "$WORK/procs.dat"
  stop_sessiond
done
for locks in 1 4 16 64; do
  start_sessiond "$CPUS" "$locks"
  read -r rps _ <<<"$(run_wrk read.lua "http://127.0.0.1:$SD_PORT" "$SHORT")"
  read -r wrps _ <<<"$(run_wrk write.lua "http://127.0.0.1:$SD_PORT" "$SHORT")"
  echo "$locks $rps $wrps" >> "$WORK/locks.dat"
  stop_sessiond
done

echo "== region scale: 1,000,000 sessions (4 x 256 B) ==" >&2
"$ROOT/target/release/sessiond-bench-scale" --sessions 1000000 --bucket 100000 > "$WORK/scale.csv"
grep '^fill,' "$WORK/scale.csv" | tr ',' ' ' | cut -d' ' -f2,3 > "$WORK/fill.dat"
grep '^reap,' "$WORK/scale.csv" | tr ',' ' ' | cut -d' ' -f2,3 > "$WORK/reap.dat"
REAP_ALL=$(grep '^reap_expired,' "$WORK/scale.csv" | cut -d, -f2,3)

mkdir -p "$IMG"
gnuplot <<EOF
set terminal pngcairo size 800,420 noenhanced
set grid
set key left top
set output "$IMG/throughput_procs.png"
set title "sessiond throughput vs max_procs (max_locks=16, $CONNS connections)"
set xlabel "max_procs"; set ylabel "requests/s"; set yrange [0:*]
plot "$WORK/procs.dat" using 1:2 with linespoints title "read", "" using 1:3 with linespoints title "write"
set output "$IMG/throughput_locks.png"
set title "sessiond throughput vs max_locks (max_procs=$CPUS, $CONNS connections)"
set xlabel "max_locks"; set logscale x 2
plot "$WORK/locks.dat" using 1:2 with linespoints title "read", "" using 1:3 with linespoints title "write"
unset logscale x
set output "$IMG/fill_rate.png"
set title "Region create rate while filling to 1,000,000 (buckets of 100k)"
set xlabel "sessions live at end of bucket"; set ylabel "creates/s"
plot "$WORK/fill.dat" using 1:2 with linespoints title "create (region API)"
set output "$IMG/reaper.png"
set title "Reaper sweep time vs live sessions (none expired)"
set xlabel "live sessions"; set ylabel "microseconds"
plot "$WORK/reap.dat" using 1:2 with linespoints title "sweep"
EOF

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
ms() { awk -v u="$1" 'BEGIN{ printf "%.2f", u/1000 }'; }
{
  echo "<!-- compare:begin -->"
  echo "### Run of $(date -u +%Y-%m-%d) (\`bash benches/compare.sh\`, DURATION=${DURATION}s, ROUNDS=$ROUNDS, $CONNS connections)"
  echo
  echo "Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, kernel $(uname -r)."
  echo "sessiond: release build, max_procs=$CPUS, max_locks=16, $SESSIONS sessions each holding one 256-byte value. wrk runs on the same $CPUS cores as the servers."
  echo
  echo "| workload | ops/s | p50 ms | p99 ms | errors | × nginx | × Redis |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  echo "| sessiond read (GET attribute by cookie) | $R_RPS | $(ms "$R_P50") | $(ms "$R_P99") | $R_ERR | $(ratio "$R_RPS" "$N_RPS") | $(ratio "$R_RPS" "$RG_RPS") (GET) |"
  echo "| sessiond write (PUT 256 B by cookie) | $W_RPS | $(ms "$W_P50") | $(ms "$W_P99") | $W_ERR | $(ratio "$W_RPS" "$N_RPS") | $(ratio "$W_RPS" "$RS_RPS") (SET) |"
  echo "| sessiond create (POST, evict-oldest context) | $C_RPS | $(ms "$C_P50") | $(ms "$C_P99") | $C_ERR | $(ratio "$C_RPS" "$N_RPS") | |"
  echo "| sessiond \`GET /healthz\` (HTTP floor: hyper, routing, metrics; no session) | $F_RPS | $(ms "$F_P50") | $(ms "$F_P99") | $F_ERR | $(ratio "$F_RPS" "$N_RPS") | |"
  echo "| nginx \`return 200 'ok'\` | $N_RPS | $(ms "$N_P50") | $(ms "$N_P99") | $N_ERR | 1.00 | |"
  echo "| redis-benchmark GET 256 B | $RG_RPS | $RG_P50 | $RG_P99 | | | 1.00 |"
  echo "| redis-benchmark SET 256 B | $RS_RPS | $RS_P50 | $RS_P99 | | | 1.00 |"
  echo
  echo "Each wrk figure is the median of $ROUNDS interleaved rounds of ${DURATION}s (errors: the sum). Every round (workload, req/s, p50 us, p99 us, errors, non-2xx):"
  echo
  echo '```'
  cat "$WORK/rounds.txt"
  echo '```'
  echo
  echo "Worker memory after the run (kB, from /proc/PID/smaps_rollup): pid, RSS, private (clean+dirty)."
  echo
  echo '```'
  printf '%s' "$RSS_LINES"
  echo '```'
  echo
  echo "Throughput vs max_procs (read, write req/s):"
  echo
  echo '```'
  cat "$WORK/procs.dat"
  echo '```'
  echo
  echo "Throughput vs max_locks (read, write req/s):"
  echo
  echo '```'
  cat "$WORK/locks.dat"
  echo '```'
  echo
  echo "Region fill to 1,000,000 sessions (creates/s per 100k bucket) and reaper sweep (µs, nothing expired):"
  echo
  echo '```'
  paste -d' ' "$WORK/fill.dat" "$WORK/reap.dat" | awk '{printf "%8d live  create %9d/s  sweep %6d us\n", $1, $2, $4}'
  echo "sweep that frees every session: $REAP_ALL (freed,us)"
  echo '```'
  echo
  echo "![throughput vs max_procs](img/throughput_procs.png)"
  echo "![throughput vs max_locks](img/throughput_locks.png)"
  echo "![fill rate](img/fill_rate.png)"
  echo "![reaper sweep](img/reaper.png)"
  echo "<!-- compare:end -->"
} > "$WORK/section.md"

cat "$WORK/section.md"
if [ -f "$DOC" ] && grep -q '<!-- compare:begin -->' "$DOC"; then
  python3 - "$WORK/section.md" "$DOC" <<'PY'
import re, sys
new = open(sys.argv[1]).read().strip()
doc = open(sys.argv[2]).read()
doc = re.sub(r"<!-- compare:begin -->.*?<!-- compare:end -->", lambda m: new, doc, flags=re.S)
open(sys.argv[2], "w").write(doc)
PY
else
  { echo; echo "## sessiond vs nginx vs Redis (benches/compare.sh)"; echo; cat "$WORK/section.md"; } >> "$DOC"
fi
echo "wrote $DOC and $IMG/*.png" >&2
