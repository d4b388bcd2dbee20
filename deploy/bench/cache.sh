#!/usr/bin/env bash
# The cache benchmark: one api instance pinned to one core, wrk pinned to the other, GET
# course pages by id over a hot set of courses, in three modes measured in one run:
#   uncached  caching off: every request reads Postgres;
#   redis     the Redis tier only (in-process tier off);
#   local     both tiers (the default).
# Then the invalidation lag: writes through one instance while a second one listens,
# read off the second's courser_api_cache_invalidation_lag_seconds histogram.
#
# Usage: deploy/bench/cache.sh [--scale F] [--seconds N] [--database-url URL]
#   (defaults 0.01 and 15; without --database-url the data set is loaded once per scale
#   into a database of its own, courser_bench; with it, that database is used as it is)
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE=0.01 SECONDS_EACH=15 DB=
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) SCALE=$2; shift 2 ;;
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --database-url) DB=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y wrk >/dev/null; }
cargo build --release -p courser-api -p courser --quiet
bin=target/release
$bin/courser up --only-services >/dev/null
eval "$($bin/courser env)"
PG=${COURSER_DATABASE_URL%/*}
REDIS=${COURSER_REDIS_URL:-redis://127.0.0.1:16379}
KEY=bench-key-0123456789abcdef
export COURSES=1000 REVIEWS=1000 KEY

if [ -z "$DB" ]; then
  # The data set, loaded once per scale (the seeder refuses a loaded database).
  DB="$PG/courser_bench"
  psql "$PG/postgres" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'courser_bench'" | grep -q 1 \
    || psql "$PG/postgres" -qc "CREATE DATABASE courser_bench"
  COURSER_DATABASE_URL=$DB $bin/courser-api migrate >/dev/null
  $bin/courser seed --scale "$SCALE" --database-url "$DB" >/dev/null 2>&1 || true
fi

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_api PORT CPU [ENV=VALUE…]: an instance in the background, waited for.
start_api() {
  local port=$1 cpu=$2; shift 2
  env COURSER_LISTEN=127.0.0.1:$port COURSER_DATABASE_URL=$DB COURSER_API_KEYS=$KEY \
      COURSER_REDIS_URL=$REDIS COURSER_CACHE_PREFIX=bench-$RANDOM RUST_LOG=warn "$@" \
      taskset -c "$cpu" $bin/courser-api serve &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.1; done
  echo "instance on $port did not start" >&2; exit 1
}

rate() { # wrk's requests/s for a URL, after a warm-up pass
  taskset -c 1 wrk -t1 -c32 -d5s -s deploy/bench/course-pages.lua "$1" >/dev/null
  taskset -c 1 wrk -t1 -c32 -d"${SECONDS_EACH}s" --latency -s deploy/bench/course-pages.lua "$1" \
    | tee /dev/stderr | awk '/Requests\/sec/ {print $2}'
}

declare -A rps
for mode in uncached redis local; do
  case $mode in
    uncached) start_api 3100 0 COURSER_REDIS_URL= ;;
    redis) start_api 3100 0 COURSER_CACHE_LOCAL_BYTES=0 ;;
    local) start_api 3100 0 ;;
  esac
  echo "== $mode" >&2
  rps[$mode]=$(rate http://127.0.0.1:3100)
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
done

# Invalidation lag: writes on :3101, the listener on :3102.
start_api 3101 0 COURSER_CACHE_PREFIX=bench-lag
start_api 3102 0 COURSER_CACHE_PREFIX=bench-lag
taskset -c 1 wrk -t1 -c4 -d10s -s deploy/bench/helpful.lua http://127.0.0.1:3101 >/dev/null
lag=$(curl -s http://127.0.0.1:3102/metrics | awk '
  /^courser_api_cache_invalidation_lag_seconds_bucket/ {
    match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5); n[le] = $2; order[++k] = le }
  /^courser_api_cache_invalidation_lag_seconds_count/ { total = $2 }
  END { for (i = 1; i <= k; i++) if (n[order[i]] >= 0.99 * total) { print order[i], total; exit } }')

printf '\nscale %s, %s courses hot, %ss per mode, one api instance on one core\n' "$SCALE" "$COURSES" "$SECONDS_EACH"
printf '%-10s %12s %8s\n' mode requests/s ratio
for mode in uncached redis local; do
  awk -v m="$mode" -v r="${rps[$mode]}" -v u="${rps[uncached]}" 'BEGIN { printf "%-10s %12s %7.1fx\n", m, r, r / u }'
done
printf 'invalidation lag p99 <= %s s over %s invalidations\n' ${lag:-"? ?"}
