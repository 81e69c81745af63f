#!/usr/bin/env bash
# A/B of HTTP read and write throughput between two sessiond binaries, in one
# run on one machine, rounds interleaved so slow phases of a shared VM hit
# both alike. Used to show a change did not slow the HTTP path.
#
#   git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release --bin sessiond)
#   cargo build --release --bin sessiond
#   OLD=/tmp/old-target/release/sessiond bash benches/ab.sh
#
# Prints a Markdown table (medians of ROUNDS rounds of DURATION seconds each).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OLD=${OLD:?set OLD to the other sessiond binary}
NEW=${NEW:-$ROOT/target/release/sessiond}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SESSIONS=${SESSIONS:-10000}
CPUS=$(nproc)
WORK=$(mktemp -d /tmp/sessiond-ab.XXXXXX)
export WRK_DIR="$ROOT/benches/wrk"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

start() { # $1 = name, $2 = binary, $3 = port
  cat > "$WORK/$1.toml" <<EOF
listen = "127.0.0.1:$3"
data_dir = "$WORK/$1-data"
max_procs = $CPUS
log_level = "warn"
[sessions]
max_sessions = 20000
max_values_per_session = 4
max_value_size = 256
max_locks = 16
timeout = 3600
EOF
  "$2" --config "$WORK/$1.toml" 2>"$WORK/$1.log" &
  PIDS+=("$!")
  wait_port "$3"
  python3 "$ROOT/benches/prepare_sessions.py" 127.0.0.1 "$3" "$SESSIONS" > "$WORK/$1.ids"
}

run() { # $1 = name, $2 = port, $3 = script -> "rps p50_us p99_us"
  IDS_FILE="$WORK/$1.ids" wrk -t"$CPUS" -c"$CONNS" -d"${DURATION}"s -s "$WRK_DIR/$3" "http://127.0.0.1:$2" > "$WORK/wrk.out" 2>&1
  local line; line=$(grep '^RESULT' "$WORK/wrk.out") || { cat "$WORK/wrk.out" >&2; exit 1; }
  echo "$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$line") $(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line") $(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")"
}

start old "$OLD" 18281
start new "$NEW" 18282
: > "$WORK/rounds.txt"
for r in $(seq 1 "$ROUNDS"); do
  for w in "old 18281 read.lua" "new 18282 read.lua" "old 18281 write.lua" "new 18282 write.lua"; do
    set -- $w
    echo "$1-${3%.lua} $(run "$1" "$2" "$3")" >> "$WORK/rounds.txt"
  done
done
median() { awk -v w="$1" '$1==w {print $2}' "$WORK/rounds.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ printf "%.2f", a/b }'; }
OR=$(median old-read) NR=$(median new-read) OW=$(median old-write) NW=$(median new-write)
echo "| workload | old req/s | new req/s | new / old |"
echo "| --- | ---: | ---: | ---: |"
echo "| read (GET attribute by cookie) | $OR | $NR | $(ratio "$NR" "$OR") |"
echo "| write (PUT 256 B by cookie) | $OW | $NW | $(ratio "$NW" "$OW") |"
echo
echo "Rounds (binary-workload, req/s, p50 us, p99 us):"
echo
echo '```'
cat "$WORK/rounds.txt"
echo '```'
