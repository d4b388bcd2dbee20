#!/usr/bin/env bash
# P1 of BENCHMARKS.md, proxy only: four trivial backends answering a fixed 1 KiB JSON
# body, then the same `wrk -t1 -c64 -d${DURATION}s` through nginx (2 workers, upstream
# keepalive 256) and through courser-proxy (threads 2), printing requests/s, p99 and the
# balancer's peak RSS side by side.
#
# Needs: nginx and wrk (apt-get install -y nginx wrk), a release build of courser-proxy
# (cargo build --release -p courser-proxy; CARGO_TARGET_DIR is honoured).
# Usage: proxy/bench/p1.sh            (DURATION=10 CONNECTIONS=64 ACCESS_LOG=false)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
proxy_bin="$target/release/courser-proxy"
duration="${DURATION:-10}"
connections="${CONNECTIONS:-64}"
access_log="${ACCESS_LOG:-false}"
work="$(mktemp -d /tmp/courser-p1.XXXXXX)"
backend_ports=(18081 18082 18083 18084)
nginx_port=18090
proxy_port=18091
metrics_port=18092

for tool in nginx wrk; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y nginx wrk" >&2; exit 1; }
done
[[ -x "$proxy_bin" ]] || { echo "missing $proxy_bin: cargo build --release -p courser-proxy" >&2; exit 1; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for conf in backends lb; do
    [[ -f "$work/$conf.pid" ]] && kill "$(cat "$work/$conf.pid")" 2>/dev/null || true
  done
  sleep 0.3
  rm -rf "$work"
}
trap cleanup EXIT

# A fixed 1 KiB JSON body.
body="$(python3 -c 'import json; s=json.dumps({"course_id":1,"reviews":[{"id":i,"rating":4.5,"comment":"x"*40} for i in range(12)]}); print((s[:-1] + "," + "\"pad\":\"" + "p"*(1024-len(s)-9) + "\"}"))')"
[[ ${#body} -eq 1024 ]] || { echo "body is ${#body} bytes" >&2; exit 1; }

servers=""
for port in "${backend_ports[@]}"; do
  servers+="server { listen 127.0.0.1:$port; access_log off; keepalive_requests 1000000;
    location / { default_type application/json; return 200 '$body'; } }
"
done

cat > "$work/backends.conf" <<CONF
worker_processes 1;
pid $work/backends.pid;
error_log $work/backends.err warn;
daemon on;
events { worker_connections 4096; }
http { $servers }
CONF

upstreams=""
proxy_backends=""
for port in "${backend_ports[@]}"; do
  upstreams+="server 127.0.0.1:$port;"
  proxy_backends+="\"127.0.0.1:$port\","
done

cat > "$work/lb.conf" <<CONF
worker_processes 2;
pid $work/lb.pid;
error_log $work/lb.err warn;
daemon on;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream api { $upstreams keepalive 256; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF

cat > "$work/proxy.toml" <<CONF
listen = "127.0.0.1:$proxy_port"
metrics_listen = "127.0.0.1:$metrics_port"
threads = 2
backends = [${proxy_backends%,}]
access_log = $access_log
upgrade_sock = "$work/upgrade.sock"
CONF

nginx -c "$work/backends.conf" -p "$work"
nginx -c "$work/lb.conf" -p "$work"
RUST_LOG=warn "$proxy_bin" --config "$work/proxy.toml" > "$work/proxy.log" 2>&1 &
pids+=($!)
proxy_pid=$!
sleep 1

rss_sum_kb() { # peak (VmHWM) summed over pids
  local total=0
  for pid in "$@"; do
    total=$((total + $(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

run() { # name port -> "rps p99"
  local name="$1" port="$2"
  wrk -t1 -c"$connections" -d2s "http://127.0.0.1:$port/review/1" >/dev/null   # warm-up
  wrk -t1 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$port/review/1" > "$work/$name.wrk"
  local rps p99 errors
  rps="$(awk '/Requests\/sec/ {print $2}' "$work/$name.wrk")"
  p99="$(awk '$1=="99%" {print $2}' "$work/$name.wrk")"
  errors="$(awk '/Non-2xx|Socket errors/ {print}' "$work/$name.wrk" | tr '\n' ' ')"
  echo "$rps $p99 ${errors:-none}"
}

curl -fsS "http://127.0.0.1:$nginx_port/" | wc -c | grep -q 1024 || { echo "nginx lb not answering 1 KiB" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$proxy_port/" | wc -c | grep -q 1024 || { echo "courser-proxy not answering 1 KiB" >&2; exit 1; }

read -r nginx_rps nginx_p99 nginx_err <<<"$(run nginx $nginx_port)"
nginx_workers="$(pgrep -P "$(cat "$work/lb.pid")" | tr '\n' ' ')"
nginx_rss=$(rss_sum_kb $(cat "$work/lb.pid") $nginx_workers)
read -r proxy_rps proxy_p99 proxy_err <<<"$(run courser-proxy $proxy_port)"
proxy_rss=$(rss_sum_kb "$proxy_pid")

echo
echo "P1 $(date -u +%FT%TZ) $(nproc) cores; wrk -t1 -c$connections -d${duration}s; 4 nginx backends, 1 KiB JSON"
printf '%-16s %12s %10s %14s  %s\n' balancer "requests/s" p99 "peak RSS MiB" errors
printf '%-16s %12s %10s %14s  %s\n' "nginx (2 w)" "$nginx_rps" "$nginx_p99" "$(awk "BEGIN{printf \"%.1f\", $nginx_rss/1024}")" "$nginx_err"
printf '%-16s %12s %10s %14s  %s\n' "courser-proxy" "$proxy_rps" "$proxy_p99" "$(awk "BEGIN{printf \"%.1f\", $proxy_rss/1024}")" "$proxy_err"
awk "BEGIN{printf \"courser-proxy / nginx: %.2fx requests/s\n\", $proxy_rps/$nginx_rps}"
