#!/usr/bin/env bash
# How many requests/s courser-load generates from one core, beside wrk on the same core
# against the same server, pinned to core 1: nginx with one worker answering a fixed
# small JSON body (SERVER=nginx, the default: the fastest trivial server here), or the
# crate's single-threaded hyper server (SERVER=hyper, examples/trivial_server.rs). Each
# load tool is pinned to core 0 in turn.
#
# wrk is closed-loop (as fast as answers come back): its figure is what one core and
# this server can do. courser-load is open-loop: it is given rates, and a rate it
# generates is one where it sent and got back every request on schedule (achieved ≈
# offered, no errors) while its own CPU stayed at or under one core.
#
# Needs: wrk (apt-get install -y wrk), and release builds:
#   cargo build --release -p courser-load --bin courser-load --example trivial_server
# (CARGO_TARGET_DIR is honoured.)
# Usage: load/bench/self.sh     (DURATION=10 RATES="20000 30000 40000 50000" CONNECTIONS=64 RUNS=3 SERVER=nginx)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
load="$target/release/courser-load"
server="$target/release/examples/trivial_server"
duration="${DURATION:-10}"
rates="${RATES:-20000 30000 40000 50000}"
connections="${CONNECTIONS:-64}"
runs="${RUNS:-3}"
server_kind="${SERVER:-nginx}"
port="${PORT:-18100}"
url="http://127.0.0.1:$port"
work="$(mktemp -d /tmp/courser-load-self.XXXXXX)"

command -v wrk >/dev/null || { echo "missing wrk: apt-get install -y wrk" >&2; exit 1; }
bins=("$load")
[[ "$server_kind" == hyper ]] && bins+=("$server")
[[ "$server_kind" == nginx ]] && { command -v nginx >/dev/null || { echo "missing nginx: apt-get install -y nginx (or SERVER=hyper)" >&2; exit 1; }; }
for bin in "${bins[@]}"; do
  [[ -x "$bin" ]] || { echo "missing $bin: cargo build --release -p courser-load --bin courser-load --example trivial_server" >&2; exit 1; }
done

server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  sleep 0.2
  rm -rf "$work"
}
trap cleanup EXIT

if [[ "$server_kind" == nginx ]]; then
  cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:$port; keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{"ok":true,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'; } }
}
CONF
  # The master waits; the one worker does the work: pin both to core 1.
  taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" 2>"$work/server.log" &
else
  taskset -c 1 "$server" "127.0.0.1:$port" 2>"$work/server.log" &
fi
server_pid=$!
for _ in $(seq 50); do
  curl -sf "$url/" >/dev/null 2>&1 && break
  sleep 0.1
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores, $(awk '/model name/ {sub(/.*: /,""); print; exit}' /proc/cpuinfo)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "server:  $server_kind on core 1; load tools on core 0; ${duration}s per run, $runs runs, $connections connections"
echo

# Requests per CPU-second of the load tool itself: what one core of it would generate
# if it had the core to itself (the shared machine's other work does not inflate it).
# Each run measures wrk, then courser-load at each rate, so that the machine's changing
# load hits the tools alike.
wrk_rps=()
wrk_per_cpu=()
declare -A achieved p99s cpu per_cpu
for r in $(seq "$runs"); do
  out="$(/usr/bin/time -f '%U %S' -o "$work/wrk.time" taskset -c 0 wrk -t1 -c"$connections" -d"${duration}s" --latency "$url/course/1/reviews")"
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  total="$(awk '/requests in/ {print $1}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  per="$(awk -v n="$total" '{printf "%.0f", n / ($1 + $2)}' "$work/wrk.time")"
  echo "run $r wrk: $rps requests/s, p99 $p99, $per requests per CPU-second"
  wrk_rps+=("$rps")
  wrk_per_cpu+=("$per")
  for rate in $rates; do
    json="$work/$rate-$r.json"
    taskset -c 0 "$load" --url "$url" --workload w1 --rate "$rate" --duration "${duration}s" \
      --warmup 2s --connections "$connections" --quiet --json "$json" --html "$work/r.html" \
      >/dev/null || true
    read -r a p c e k <<<"$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
me = next(p for p in r["processes"] if p["name"] == "courser-load")
print(round(s["achieved_rps"]), s["latency_ms"]["p99"], round(me["cpu_seconds"] / s["measured_seconds"], 2), s["errors"], round(1000 / me["cpu_seconds_per_1k"]) if me["cpu_seconds_per_1k"] else 0)
' "$json")"
    echo "run $r courser-load $rate/s: achieved $a/s, p99 $p ms, its CPU $c cores, errors $e, $k requests per CPU-second"
    achieved[$rate]+="$a "
    p99s[$rate]+="$p "
    cpu[$rate]+="$c "
    per_cpu[$rate]+="$k "
  done
done
wrk_median="$(printf '%s\n' "${wrk_rps[@]}" | median)"
wrk_per_cpu_median="$(printf '%s\n' "${wrk_per_cpu[@]}" | median)"

echo
echo "(medians over $runs runs)"
echo "| tool (pinned to one core) | offered | requests/s | p99 ms | tool CPU used, cores | requests per tool CPU-second |"
echo "|---|---|---|---|---|---|"
echo "| wrk -t1 -c$connections (closed loop) | as fast as it can | $wrk_median | | | $wrk_per_cpu_median |"
for rate in $rates; do
  a="$(tr ' ' '\n' <<<"${achieved[$rate]}" | grep . | median)"
  p="$(tr ' ' '\n' <<<"${p99s[$rate]}" | grep . | median)"
  c="$(tr ' ' '\n' <<<"${cpu[$rate]}" | grep . | median)"
  k="$(tr ' ' '\n' <<<"${per_cpu[$rate]}" | grep . | median)"
  echo "| courser-load --workers 1 -c$connections | $rate/s | $a | $p | $c | $k |"
done
