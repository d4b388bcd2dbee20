#!/usr/bin/env bash
# The seeder benchmark. Each run, on the same server:
#   1. `courser seed --scale F --reset` into the courser_bench database: wall time, and
#      its rows/s while loading rows (generation and COPY, before indexes);
#   2. the baseline: the same rows, exported to binary files on the server, loaded by a
#      plain server-side `COPY … FROM 'file' (FORMAT binary)` into fresh tables with the
#      same columns and CHECK constraints and no indexes (the state the seeder loads
#      into), one table after another; rows/s over the three tables;
#   3. the same with each table created in the COPY's transaction and `FREEZE` (what
#      the seeder itself does): no WAL, rows frozen.
# The ratios of the rates compare the seeder with Postgres reading a ready file.
#
# Usage: deploy/bench/seed.sh [--scale F] [--runs N] [-- courser seed options]
#        (defaults: scale 0.1, 3 runs; e.g. `-- --threads 2`)
# The server is the private cluster of `courser up --only-services`, or the one that
# BENCH_ADMIN_URL names (a superuser URL of its maintenance database).
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE=0.1 RUNS=3 SEED_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) SCALE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --) shift; SEED_ARGS=("$@"); break ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo build --release -p courser-api -p courser --quiet
bin=target/release
if [ -z "${BENCH_ADMIN_URL:-}" ]; then
  $bin/courser up --only-services >/dev/null
  eval "$($bin/courser env)"
  BENCH_ADMIN_URL="${COURSER_DATABASE_URL%/*}/postgres"
fi
PG=${BENCH_ADMIN_URL%/*}
DB="$PG/courser_bench"
psql "$BENCH_ADMIN_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'courser_bench'" | grep -q 1 \
  || psql "$BENCH_ADMIN_URL" -qc "CREATE DATABASE courser_bench"
COURSER_DATABASE_URL=$DB $bin/courser-api migrate >/dev/null
sql() { psql "$DB" -Atq -v ON_ERROR_STOP=1 "$@"; }
# The export goes where the server may write: beside its data.
files="$(sql -c "SHOW data_directory")/courser-bench-copy"
cleanup() {
  sql -c "DROP TABLE IF EXISTS bench_ratings, bench_reviewers, bench_reviews" 2>/dev/null || true
  sql -c "COPY (SELECT 1) TO PROGRAM 'rm -rf $files'" 2>/dev/null || true
}
trap cleanup EXIT

now() { date +%s.%N; }
tables=(ratings reviewers reviews)
echo "seed benchmark $(date -u +%FT%TZ), $(nproc) cores, scale $SCALE, $RUNS runs, options: ${SEED_ARGS[*]:-none}"
printf '%-4s %8s %8s %12s %12s %7s %12s %7s\n' run "seed s" "rows s" "seed rows/s" "COPY rows/s" ratio "FREEZE r/s" ratio
results=()
for run in $(seq 1 "$RUNS"); do
  log=$(mktemp)
  t0=$(now)
  $bin/courser seed --scale "$SCALE" --reset --database-url "$DB" "${SEED_ARGS[@]}" > "$log"
  t1=$(now)
  rows_s=$(sed -n 's/.*, rows \([0-9.]*\) s,.*/\1/p' "$log")
  total_rows=$(sql -c "SELECT (SELECT count(*) FROM ratings) + (SELECT count(*) FROM reviewers) + (SELECT count(*) FROM reviews)")

  cleanup
  sql -c "COPY (SELECT 1) TO PROGRAM 'mkdir -p $files'"
  for t in "${tables[@]}"; do
    sql -c "COPY $t TO '$files/$t.bin' (FORMAT binary)"
    sql -c "CREATE TABLE bench_$t (LIKE $t INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
  done
  sql -c "CHECKPOINT"
  c0=$(now)
  for t in "${tables[@]}"; do
    sql -c "COPY bench_$t FROM '$files/$t.bin' (FORMAT binary)"
  done
  c1=$(now)
  sql -c "DROP TABLE bench_ratings, bench_reviewers, bench_reviews" -c "CHECKPOINT"
  f0=$(now)
  for t in "${tables[@]}"; do
    sql -c "BEGIN" -c "CREATE TABLE bench_$t (LIKE $t INCLUDING DEFAULTS INCLUDING CONSTRAINTS)" \
        -c "COPY bench_$t FROM '$files/$t.bin' (FORMAT binary, FREEZE)" -c "COMMIT"
  done
  f1=$(now)
  cleanup

  line=$(awk -v n="$total_rows" -v t0="$t0" -v t1="$t1" -v rows="$rows_s" -v c0="$c0" -v c1="$c1" \
             -v f0="$f0" -v f1="$f1" \
             'BEGIN { seed = n / rows; copy = n / (c1 - c0); freeze = n / (f1 - f0)
                      printf "%.1f %.1f %.0f %.0f %.2f %.0f %.2f", t1 - t0, rows, seed, copy, seed / copy, freeze, seed / freeze }')
  results+=("$line")
  read -r seed rows seed_rate copy_rate ratio freeze_rate freeze_ratio <<<"$line"
  printf '%-4s %8s %8s %12s %12s %7s %12s %7s\n' "$run" "$seed" "$rows" "$seed_rate" "$copy_rate" "$ratio" "$freeze_rate" "$freeze_ratio"
  grep -E '^ +[0-9.]+ s ' "$log" | sed 's/^/     /' | sort -k1 -rn | head -3
  tail -1 "$log" | sed 's/^/     /'
  rm -f "$log"
done
median() { sort -g | awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { for r in "${results[@]}"; do echo "$r" | awk -v c="$1" '{print $c}'; done | median; }
printf 'median: seed %s s (rows %s s); rows/s: seed %s, server-side COPY %s (ratio %s), COPY FREEZE %s (ratio %s)\n' \
  "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)"
$bin/courser verify --database-url "$DB" --sample 1000 | tail -3
