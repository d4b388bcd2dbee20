#!/usr/bin/env bash
# How many requests/s courser-load generates from one core, beside wrk on the same core
# against the same server: a trivial hyper server (examples/trivial_server.rs, a fixed
# small JSON body, keep-alive, single-threaded) pinned to core 1, each load tool pinned
# to core 0 in turn.
#
# wrk is closed-loop (as fast as answers come back): its figure is what one core and
# this server can do. courser-load is open-loop: it is given rates, and a rate it
# generates is one where it sent and got back every request on schedule (achieved ≈
# offered, no errors) while its own CPU stayed at or under one core.
#
# Needs: wrk (apt-get install -y wrk), and release builds:
#   cargo build --release -p courser-load --bin courser-load --example trivial_server
# (CARGO_TARGET_DIR is honoured.)
# Usage: load/bench/self.sh     (DURATION=10 RATES="40000 50000 60000 70000" CONNECTIONS=64 RUNS=3)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
load="$target/release/courser-load"
server="$target/release/examples/trivial_server"
duration="${DURATION:-10}"
rates="${RATES:-40000 50000 60000 70000}"
connections="${CONNECTIONS:-64}"
runs="${RUNS:-3}"
port="${PORT:-18100}"
url="http://127.0.0.1:$port"
work="$(mktemp -d /tmp/courser-load-self.XXXXXX)"

command -v wrk >/dev/null || { echo "missing wrk: apt-get install -y wrk" >&2; exit 1; }
for bin in "$load" "$server"; do
  [[ -x "$bin" ]] || { echo "missing $bin: cargo build --release -p courser-load --bin courser-load --example trivial_server" >&2; exit 1; }
done

server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

taskset -c 1 "$server" "127.0.0.1:$port" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 50); do
  curl -sf "$url/" >/dev/null 2>&1 && break
  sleep 0.1
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores, $(awk '/model name/ {sub(/.*: /,""); print; exit}' /proc/cpuinfo)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "server:  trivial_server on core 1; load tools on core 0; ${duration}s per run, $runs runs, $connections connections"
echo

wrk_rps=()
for r in $(seq "$runs"); do
  out="$(taskset -c 0 wrk -t1 -c"$connections" -d"${duration}s" --latency "$url/course/1/reviews")"
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  echo "wrk run $r: $rps requests/s, p99 $p99"
  wrk_rps+=("$rps")
done
wrk_median="$(printf '%s\n' "${wrk_rps[@]}" | median)"

declare -A achieved p99s cpu
for rate in $rates; do
  for r in $(seq "$runs"); do
    json="$work/$rate-$r.json"
    taskset -c 0 "$load" --url "$url" --workload w1 --rate "$rate" --duration "${duration}s" \
      --warmup 2s --connections "$connections" --quiet --json "$json" --html "$work/r.html" \
      --watch "server=$server_pid" >/dev/null || true
    read -r a p c e <<<"$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
me = next(p for p in r["processes"] if p["name"] == "courser-load")
print(round(s["achieved_rps"]), s["latency_ms"]["p99"], round(me["cpu_seconds"] / s["measured_seconds"], 2), s["errors"])
' "$json")"
    echo "courser-load $rate/s run $r: achieved $a/s, p99 $p ms, its CPU $c cores, errors $e"
    achieved[$rate]+="$a "
    p99s[$rate]+="$p "
    cpu[$rate]+="$c "
  done
done

echo
echo "| tool (one core) | offered | requests/s (median) | p99 ms (median) | tool CPU, cores |"
echo "|---|---|---|---|---|"
echo "| wrk -t1 -c$connections (closed loop) | as fast as it can | $wrk_median | | 1.00 |"
for rate in $rates; do
  a="$(tr ' ' '\n' <<<"${achieved[$rate]}" | grep . | median)"
  p="$(tr ' ' '\n' <<<"${p99s[$rate]}" | grep . | median)"
  c="$(tr ' ' '\n' <<<"${cpu[$rate]}" | grep . | median)"
  echo "| courser-load --workers 1 -c$connections | $rate/s | $a | $p | $c |"
done
