#!/usr/bin/env bash
# The framework adapters beside the backends their frameworks ship, in one run
# on one machine (issue 17 §4):
#
#   flock /tmp/cargo-gate.lock bash benches/adapters.sh   # where builds share the machine
#   bash benches/adapters.sh                              # about 6 minutes on 2 cores
#   DURATION=2 ROUNDS=1 bash benches/adapters.sh          # checks that the script works; not results
#
# Django: benches/django_bench, one view (read the session's counter, add one,
# store it) under gunicorn with nproc sync workers, for three session engines:
#   sessiond.django                                             (clients/python)
#   django.contrib.sessions.backends.cache on RedisCache        (Redis)
#   django.contrib.sessions.backends.db on PostgreSQL           (CONN_MAX_AGE=None)
# PHP: benches/php_bench/index.php (session_start, read the counter, add one)
# under php-fpm (pm=static, nproc children per pool) behind nginx, for three
# handlers:
#   Sessiond\SessionHandler                                     (clients/php)
#   session.save_handler=redis                                  (phpredis, php-redis)
#   session.save_handler=files
# All with session.use_strict_mode=1 (the sessiond handler refuses to run
# without it) and session.gc_probability=0.
#
# Every case first makes SESSIONS sessions through its own page, then wrk
# (benches/wrk/cookie.lua) sends each request with one of those cookies, so
# every request reads and writes a session. ROUNDS rounds of DURATION s per
# case at CONNS connections, rounds interleaved (the order shifts each round)
# so slow phases of a shared VM hit all cases alike; medians reported, with
# the ratio to the Redis-backed peer of the same framework.
#
# Starts its own throwaway sessiond, Redis and PostgreSQL (initdb under /tmp,
# as user postgres when run as root) and stops everything on exit. Installs
# what is missing: wrk, gnuplot, nginx, redis-server, postgresql, php-fpm,
# php-curl, php-redis from Debian; a venv (VENV) with Django 5.2, gunicorn,
# redis, psycopg and clients/python from PyPI. Builds sessiond in release mode
# (plain `cargo`: under the flock above, that is the lock's holder). Prints
# the results as Markdown, writes them between the adapters markers of DOC and
# the plot to IMG/adapters.png. Traffic goes only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-32}
SESSIONS=${SESSIONS:-1000}
COST_N=${COST_N:-2000}   # rounds of each client-side cost measure
DOC=${DOC:-docs/benchmarks.md}
IMG=${IMG:-docs/img}
VENV=${VENV:-$ROOT/target/bench-venv}
SESSIOND=${SESSIOND:-${CARGO_TARGET_DIR:-$ROOT/target}/release/sessiond}
CPUS=$(nproc)
export WRK_DIR="$ROOT/benches/wrk"

SD_PORT=18381 RD_PORT=18382 PG_PORT=18383
DJ_SD=18391 DJ_RD=18392 DJ_DB=18393
PHP_SD=18394 PHP_RD=18395 PHP_FS=18396

# --- what is needed --------------------------------------------------------------

PHPV=$(php -r 'echo PHP_MAJOR_VERSION . "." . PHP_MINOR_VERSION;' 2>/dev/null || true)
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v redis-server >/dev/null || need+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v php >/dev/null || need+=(php-cli)
compgen -G '/usr/sbin/php-fpm*' >/dev/null || need+=(php-fpm)
php -m 2>/dev/null | grep -qx curl || need+=(php-curl)
php -m 2>/dev/null | grep -qx redis || need+=(php-redis)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} ..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  PHPV=$(php -r 'echo PHP_MAJOR_VERSION . "." . PHP_MINOR_VERSION;')
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
FPM=$(command -v "php-fpm$PHPV" || echo "/usr/sbin/php-fpm$PHPV")
PGBIN=$(dirname "$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
if ! "$VENV/bin/python" -c 'import django, gunicorn, redis, psycopg, sessiond.django' 2>/dev/null; then
  echo "making the venv $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'django>=5.2,<5.3' gunicorn redis 'psycopg[binary]' -e "$ROOT/clients/python[django]"
fi

echo "building sessiond (release) ..." >&2
cargo build --release --quiet --bin sessiond

# --- servers ---------------------------------------------------------------------

WORK=$(mktemp -d /tmp/sessiond-adapters.XXXXXX)
chmod 755 "$WORK"   # user postgres traverses it
if [ "$(id -u)" -eq 0 ]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
PIDS=() GUNICORNS=()
cleanup() { # SIGTERM to each server (gunicorn: SIGQUIT, its quick stop), up to 5 s, then SIGKILL
  local p i
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${GUNICORNS[@]}"; do kill -QUIT "$p" 2>/dev/null || true; done
  if [ -f "$WORK/pg/postmaster.pid" ]; then as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate -w -t 10 stop >/dev/null 2>&1 || true; fi
  for p in "${PIDS[@]}" "${GUNICORNS[@]}"; do
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; [ "$i" -lt 50 ] && sleep 0.1 || kill -9 "$p" 2>/dev/null || true; done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wait_port() { for _ in $(seq 1 400); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
fail() { echo "adapters.sh: $1; last lines of $2:" >&2; tail -n 30 "$2" >&2 || true; exit 1; }

echo "[${SECONDS}s] starting sessiond, Redis, PostgreSQL ..." >&2
cat > "$WORK/sd.toml" <<EOF
listen = "127.0.0.1:$SD_PORT"
data_dir = "$WORK/sd"
max_procs = $CPUS
log_level = "warn"
[sessions]
max_sessions = $(( SESSIONS * 4 + 1000 ))
timeout = 3600
EOF
"$SESSIOND" --config "$WORK/sd.toml" 2>"$WORK/sd.log" &
PIDS+=("$!")

redis-server --port "$RD_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$WORK" --logfile "$WORK/redis.log" &
PIDS+=("$!")

# PostgreSQL as tools/test makes it (durability off, as Redis's persistence is),
# on loopback TCP like the other two stores.
mkdir -p "$WORK/pg" "$WORK/pgsock"
[ "$(id -u)" -ne 0 ] || chown postgres: "$WORK/pg" "$WORK/pgsock"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres --no-sync -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 \
  || fail "initdb failed" "$WORK/initdb.log"
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pgsock/postgres.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $WORK/pgsock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null 2>&1 || fail "PostgreSQL did not start" "$WORK/pgsock/postgres.log"
"$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 -c 'CREATE DATABASE bench'
wait_port "$SD_PORT"; wait_port "$RD_PORT"

# Django: one gunicorn per backend, all up for the whole run (an idle one costs nothing).
export SESSIOND_URL="http://127.0.0.1:$SD_PORT" BENCH_REDIS_URL="redis://127.0.0.1:$RD_PORT/0"
export BENCH_PG_HOST=127.0.0.1 BENCH_PG_PORT=$PG_PORT BENCH_PG_DB=bench
DJ="$ROOT/benches/django_bench"
BENCH_BACKEND=db DJANGO_SETTINGS_MODULE=settings PYTHONPATH="$DJ" "$VENV/bin/django-admin" migrate -v 0
for b in "sessiond $DJ_SD" "redis $DJ_RD" "db $DJ_DB"; do
  read -r name port <<<"$b"
  BENCH_BACKEND=$name "$VENV/bin/gunicorn" --workers "$CPUS" --bind "127.0.0.1:$port" --chdir "$DJ" \
    --error-logfile "$WORK/gunicorn-$name.log" wsgi &
  GUNICORNS+=("$!")
done

# PHP: one php-fpm with a pool per handler, behind one nginx with a server per pool.
mkdir -p "$WORK/phpsess" "$WORK/ng"
pool() { # $1 = name, then php_admin_value lines
  local name=$1; shift
  cat <<EOF
[$name]
user = $(id -un)
group = $(id -gn)
listen = $WORK/fpm-$name.sock
listen.mode = 0666
pm = static
pm.max_children = $CPUS
pm.max_requests = 0
php_admin_value[session.use_strict_mode] = 1
php_admin_value[session.gc_probability] = 0
EOF
  printf '%s\n' "$@"
}
{
  printf '[global]\npid = %s\nerror_log = %s\ndaemonize = no\n' "$WORK/fpm.pid" "$WORK/fpm.log"
  pool sessiond "php_admin_value[auto_prepend_file] = $ROOT/benches/php_bench/sessiond.php" \
    "env[SESSIOND_URL] = http://127.0.0.1:$SD_PORT"
  pool redis "php_admin_value[session.save_handler] = redis" \
    "php_admin_value[session.save_path] = \"tcp://127.0.0.1:$RD_PORT\""
  pool files "php_admin_value[session.save_handler] = files" \
    "php_admin_value[session.save_path] = $WORK/phpsess"
} > "$WORK/fpm.conf"
"$FPM" --nodaemonize --allow-to-run-as-root --fpm-config "$WORK/fpm.conf" 2>>"$WORK/fpm.log" &
PIDS+=("$!")
server() { # $1 = port, $2 = pool
  echo "  server { listen 127.0.0.1:$1; root $ROOT/benches/php_bench;
    location / { include /etc/nginx/fastcgi_params; fastcgi_param SCRIPT_FILENAME \$document_root/index.php;
      fastcgi_pass unix:$WORK/fpm-$2.sock; } }"
}
cat > "$WORK/ng/nginx.conf" <<EOF
user $(id -un) $(id -gn);
worker_processes 1;
pid $WORK/ng/nginx.pid;
error_log $WORK/ng/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/ng; proxy_temp_path $WORK/ng; fastcgi_temp_path $WORK/ng;
  uwsgi_temp_path $WORK/ng; scgi_temp_path $WORK/ng;
$(server "$PHP_SD" sessiond)
$(server "$PHP_RD" redis)
$(server "$PHP_FS" files)
}
EOF
"$NGINX" -c "$WORK/ng/nginx.conf" -p "$WORK/ng" 2>>"$WORK/ng/error.log" &
PIDS+=("$!")
for p in $DJ_SD $DJ_RD $DJ_DB $PHP_SD $PHP_RD $PHP_FS; do wait_port "$p"; done

# --- cases -------------------------------------------------------------------------

# case name, port, cookie name
CASES=("dj_sessiond $DJ_SD sessionid" "dj_redis $DJ_RD sessionid" "dj_db $DJ_DB sessionid"
       "php_sessiond $PHP_SD PHPSESSID" "php_redis $PHP_RD PHPSESSID" "php_files $PHP_FS PHPSESSID")
echo "[${SECONDS}s] making $SESSIONS sessions per case through its own page ..." >&2
for c in "${CASES[@]}"; do
  read -r name port cookie <<<"$c"
  python3 "$ROOT/benches/prepare_cookies.py" "http://127.0.0.1:$port/" "$cookie" "$SESSIONS" > "$WORK/$name.ids" \
    || { tail -n 30 "$WORK"/*.log "$WORK/ng/error.log" >&2; exit 1; }
  # The first session was made with n=1: the same cookie now reads 2, so the page reads and writes it.
  got=$(curl -s -H "Cookie: $cookie=$(head -1 "$WORK/$name.ids")" "http://127.0.0.1:$port/")
  [ "$got" = 2 ] || { echo "$name: the session's counter read '$got', not 2" >&2; exit 1; }
done

min() { echo $(( $1 < $2 ? $1 : $2 )); }
THREADS=$(min "$CPUS" "$CONNS")
# CPU time (ticks) of every process on the machine, summed by command name.
cpu_snapshot() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk 'match($0, /\(.*\)/) { comm = substr($0, RSTART + 1, RLENGTH - 2)
    gsub(/ /, "_", comm); split(substr($0, RSTART + RLENGTH + 1), f, " "); t[comm] += f[12] + f[13] }
    END { for (c in t) print c, t[c] }'
}
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
# Busy ticks of the whole machine (/proc/stat: user nice system irq softirq steal).
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# One wrk run -> "rps p50_us p99_us errors non2xx cpu_app cpu_store cpu_nginx cpu_wrk cpu_machine",
# the last five in CPU us per request: from /proc/PID/stat before and after the run, by command
# (app: gunicorn or php-fpm; store: sessiond's processes, redis-server, postgres; wrk from bash's
# time), and the whole machine's busy time, kernel threads included, from /proc/stat.
run_wrk() { # $1 = case name, $2 = port, $3 = cookie name
  local busy0 busy1; busy0=$(busy_ticks)
  cpu_snapshot > "$WORK/cpu.before"
  local TIMEFORMAT='%U %S'
  { time IDS_FILE="$WORK/$1.ids" COOKIE_NAME=$3 WRK_THREADS=$THREADS \
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}"s -s "$WRK_DIR/cookie.lua" "http://127.0.0.1:$2/" > "$WORK/wrk.out" 2>&1; } 2> "$WORK/wrk.time"
  cpu_snapshot > "$WORK/cpu.after"
  busy1=$(busy_ticks)
  local line; line=$(grep '^RESULT' "$WORK/wrk.out" || true)
  [ -n "$line" ] || { cat "$WORK/wrk.out" >&2; echo "wrk produced no RESULT" >&2; exit 1; }
  local rps p50 p99 req err non2xx
  read -r rps p50 p99 req err non2xx <<<"$(sed -E 's/.*rps=([0-9]+) p50_us=([0-9]+) p99_us=([0-9]+) requests=([0-9]+) errors=([0-9]+) non2xx=([0-9]+).*/\1 \2 \3 \4 \5 \6/' <<<"$line")"
  echo "$rps $p50 $p99 $err $non2xx $(awk -v req="$req" -v tick="$TICK_US" -v wrk="$(cat "$WORK/wrk.time")" \
    -v busy=$(( busy1 - busy0 )) '
    FNR == NR { b[$1] = $2; next }
    { d = $2 - b[$1]; if (d <= 0) next
      if ($1 == "gunicorn" || $1 ~ /^php-fpm/) app += d
      else if ($1 ~ /^sessiond/ || $1 == "redis-server" || $1 == "postgres") store += d
      else if ($1 == "nginx") ng += d }
    END { split(wrk, w, " "); printf "%.0f %.0f %.0f %.0f %.0f", app * tick / req, store * tick / req, ng * tick / req,
      (w[1] + w[2]) * 1e6 / req, busy * tick / req }' "$WORK/cpu.before" "$WORK/cpu.after")"
}

echo "[${SECONDS}s] == $ROUNDS interleaved rounds of ${DURATION}s per case, $CONNS connections, $THREADS wrk threads ==" >&2
: > "$WORK/rounds.txt"
n=${#CASES[@]}
for round in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $(( n - 1 ))); do
    read -r name port cookie <<<"${CASES[$(( (k + round - 1) % n ))]}"
    r=$(run_wrk "$name" "$port" "$cookie")
    echo "$name $r $round" >> "$WORK/rounds.txt"
    echo "[${SECONDS}s] round $round: $name $r" >&2
  done
done
# Each first session was read and written in the rounds: its counter is far past 2.
for c in "${CASES[@]}"; do
  read -r name port cookie <<<"$c"
  echo "$name $(curl -s -H "Cookie: $cookie=$(head -1 "$WORK/$name.ids")" "http://127.0.0.1:$port/")" >> "$WORK/counters.txt"
done

# What the application process spends on the session, alone in one process, one
# call after another: the backend's session code and the client calls under it.
echo "[${SECONDS}s] client-side cost, one process at a time ($COST_N rounds each) ..." >&2
: > "$WORK/clientcost.txt"
for b in sessiond redis db; do
  BENCH_BACKEND=$b PYTHONPATH="$DJ" "$VENV/bin/python" "$DJ/clientcost.py" "$WORK/dj_$b.ids" "$COST_N" \
    | sed "s/^/Django $b /" >> "$WORK/clientcost.txt"
done
php "$ROOT/benches/php_bench/clientcost.php" sessiond "http://127.0.0.1:$SD_PORT" "$WORK/php_sessiond.ids" "$COST_N" \
  | sed "s/^/PHP sessiond /" >> "$WORK/clientcost.txt"
php "$ROOT/benches/php_bench/clientcost.php" redis "tcp://127.0.0.1:$RD_PORT" "$WORK/php_redis.ids" "$COST_N" \
  | sed "s/^/PHP redis /" >> "$WORK/clientcost.txt"

# --- results -----------------------------------------------------------------------

median() { # $1 = case, $2 = column (2 rps, 3 p50, 4 p99)
  awk -v w="$1" -v c="$2" '$1==w {print $c}' "$WORK/rounds.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
errors() { awk -v w="$1" '$1==w {s+=$5} END {print s+0}' "$WORK/rounds.txt"; }  # wrk counts non-2xx among its errors
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
ms() { awk -v u="$1" 'BEGIN{ printf "%.1f", u/1000 }'; }
declare -A RPS P50 P99 ERR
for c in "${CASES[@]}"; do
  read -r name _ <<<"$c"
  RPS[$name]=$(median "$name" 2); P50[$name]=$(median "$name" 3); P99[$name]=$(median "$name" 4); ERR[$name]=$(errors "$name")
done
cpurow() { # $1 = case, $2 = label: medians of the CPU columns
  local m; m=$(median "$1" 11)
  echo "| $2 | $(median "$1" 7) | $(median "$1" 8) | $(median "$1" 9) | $(median "$1" 10) | $m | $(awk -v t="$m" -v r="${RPS[$1]}" 'BEGIN{printf "%.2f", t * r / 1e6}') |"
}
spread() { # $1 = case, $2 = peer: lowest and highest req/s ratio of one round's two runs
  awk -v a="$1" -v b="$2" '$1 == a { x[$12] = $2 } $1 == b { y[$12] = $2 }
    END { lo = 1e9; hi = 0; for (r in x) if (y[r] > 0) { q = x[r] / y[r]; if (q < lo) lo = q; if (q > hi) hi = q }
          printf "%.2f–%.2f", lo, hi }' "$WORK/rounds.txt"
}
row() { # $1 = case, $2 = label, $3 = the Redis-backed peer's case
  local per="1.00"; [ "$1" = "$3" ] || per=$(spread "$1" "$3")
  echo "| $2 | ${RPS[$1]} | $(ms "${P50[$1]}") | $(ms "${P99[$1]}") | ${ERR[$1]} | $(ratio "${RPS[$1]}" "${RPS[$3]}") | $per | $(ratio "${P99[$1]}" "${P99[$3]}") |"
}

ver() { "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
CMD="bash benches/adapters.sh"
[ "$DURATION" = 10 ] && [ "$ROUNDS" = 5 ] && [ "$CONNS" = 32 ] && [ "$SESSIONS" = 1000 ] \
  || CMD="DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS SESSIONS=$SESSIONS $CMD"
{
  echo "<!-- adapters:begin -->"
  echo "### Run of $(date -u +%Y-%m-%d) (\`$CMD\`)"
  echo
  echo "Machine: $CPUS cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, kernel $(uname -r)."
  echo "Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'), Django $(ver django), gunicorn $(ver gunicorn) ($CPUS sync workers), sessiond.Client on its own HTTP/1.1 pool (stdlib sockets), redis-py $(ver redis), psycopg $(ver psycopg)."
  echo "PHP $(php -r 'echo PHP_VERSION;') php-fpm (pm=static, $CPUS children per pool, OPcache on) behind nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') (1 worker), phpredis $(php -r 'echo phpversion("redis");')."
  echo "Redis $(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/') (persistence off), PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (fsync, synchronous_commit and full_page_writes off), sessiond release build (max_procs=$CPUS); all three on 127.0.0.1 TCP."
  echo "wrk: $CONNS connections, $THREADS threads, on the same $CPUS cores as everything else; $SESSIONS sessions per case, each request with one of their cookies."
  echo
  echo "| case | req/s | p50 ms | p99 ms | errors | req/s × Redis peer | same, per round (min–max) | p99 × Redis peer |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  row dj_sessiond "Django, \`sessiond.django\`" dj_redis
  row dj_redis "Django, cache backend on \`RedisCache\`" dj_redis
  row dj_db "Django, db backend on PostgreSQL" dj_redis
  row php_sessiond "PHP, \`Sessiond\\SessionHandler\`" php_redis
  row php_redis "PHP, phpredis \`save_handler=redis\`" php_redis
  row php_files "PHP, \`save_handler=files\`" php_redis
  echo
  echo "Medians of $ROUNDS interleaved rounds of ${DURATION}s (errors: the sum, wrk's socket errors and non-2xx answers)."
  echo
  echo "Where the CPU went, in µs of CPU time per request (medians over the rounds): by process, from /proc/PID/stat before and after each wrk run (wrk from bash's time); the whole machine, kernel threads included, from /proc/stat; cores busy = machine × req/s, out of $CPUS."
  echo
  echo "| case | app (gunicorn / php-fpm) | store (sessiond / redis-server / postgres) | nginx | wrk | machine | cores busy |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  cpurow dj_sessiond "Django, sessiond"
  cpurow dj_redis "Django, Redis"
  cpurow dj_db "Django, PostgreSQL"
  cpurow php_sessiond "PHP, sessiond"
  cpurow php_redis "PHP, phpredis"
  cpurow php_files "PHP, files"
  echo
  echo "Client-side cost: the application's session work alone, in one process (no gunicorn, php-fpm or wrk), one call after another on an idle machine, over the same sessions; $COST_N rounds each (\`benches/django_bench/clientcost.py\`, \`benches/php_bench/clientcost.php\`). CPU is the process's own (getrusage), wall includes the round trips."
  echo
  echo "| framework | backend | what one round does | client CPU µs | wall µs |"
  echo "| --- | --- | --- | ---: | ---: |"
  awk '{ gsub(/_/, " ", $3); printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$WORK/clientcost.txt"
  echo
  echo "Every round (case, req/s, p50 us, p99 us, errors, non-2xx, then CPU us per request: app, store, nginx, wrk, machine; round):"
  echo
  echo '```'
  cat "$WORK/rounds.txt"
  echo '```'
  echo
  echo "Counter of each case's first session after the rounds (it read 2 before them): $(awk '{printf "%s%s %s", sep, $1, $2; sep=", "}' "$WORK/counters.txt")."
  echo
  echo "![req/s and p99 per framework and backend](img/adapters.png)"
  echo
  echo "The script took $(( SECONDS / 60 )) min $(( SECONDS % 60 )) s."
  echo "<!-- adapters:end -->"
} > "$WORK/section.md"

mkdir -p "$IMG"
{
  echo "Django ${RPS[dj_sessiond]} ${RPS[dj_redis]} ${RPS[dj_db]} $(ms "${P99[dj_sessiond]}") $(ms "${P99[dj_redis]}") $(ms "${P99[dj_db]}")"
  echo "PHP ${RPS[php_sessiond]} ${RPS[php_redis]} ${RPS[php_files]} $(ms "${P99[php_sessiond]}") $(ms "${P99[php_redis]}") $(ms "${P99[php_files]}")"
} > "$WORK/plot.dat"
gnuplot <<EOF
set terminal pngcairo size 1150,520 noenhanced font ",10"
set output "$IMG/adapters.png"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set key outside bottom center horizontal
set multiplot layout 1,2 title "Session read + write per request, $CONNS connections, $CPUS cores, medians of $ROUNDS rounds of ${DURATION}s"
set title "requests/s (higher is better)"
set offsets 0, 0, graph 0.12, 0
plot "$WORK/plot.dat" u 2:xtic(1) title "sessiond adapter" lc rgb "#1f77b4", \
  "" u 3 title "Redis (Django RedisCache / phpredis)" lc rgb "#d62728", \
  "" u 4 title "PostgreSQL (Django db) / files (PHP)" lc rgb "#7f7f7f", \
  "" u (\$0-0.27):2:(sprintf("%d", \$2)) w labels offset 0,0.7 notitle, \
  "" u (\$0):3:(sprintf("%d", \$3)) w labels offset 0,0.7 notitle, \
  "" u (\$0+0.27):4:(sprintf("%d", \$4)) w labels offset 0,0.7 notitle
set title "p99 latency, ms (lower is better)"
plot "$WORK/plot.dat" u 5:xtic(1) title "sessiond adapter" lc rgb "#1f77b4", \
  "" u 6 title "Redis (Django RedisCache / phpredis)" lc rgb "#d62728", \
  "" u 7 title "PostgreSQL (Django db) / files (PHP)" lc rgb "#7f7f7f", \
  "" u (\$0-0.27):5:(sprintf("%.1f", \$5)) w labels offset 0,0.7 notitle, \
  "" u (\$0):6:(sprintf("%.1f", \$6)) w labels offset 0,0.7 notitle, \
  "" u (\$0+0.27):7:(sprintf("%.1f", \$7)) w labels offset 0,0.7 notitle
unset multiplot
EOF

cat "$WORK/section.md"
# shellcheck source=benches/doc_section.sh
source "$ROOT/benches/doc_section.sh"
write_section adapters "Framework adapters (benches/adapters.sh)" "$WORK/section.md" "$DOC"
echo "wrote $DOC and $IMG/adapters.png in $SECONDS s" >&2
