#!/usr/bin/env bash
# P1 of BENCHMARKS.md, proxy only: four trivial backends answering a fixed 1 KiB JSON
# body, then the same `wrk -t1 -c64 -d${DURATION}s` through nginx (2 workers, upstream
# keepalive 256), HAProxy (2 threads, http-reuse always) and courser-proxy (threads 2),
# printing requests/s, p99, CPU per request and each balancer's peak RSS side by side.
#
# Needs: nginx, haproxy and wrk (installed with apt-get when missing), a release build of
# courser-proxy (cargo build --release -p courser-proxy; CARGO_TARGET_DIR is honoured).
# Usage: proxy/bench/p1.sh            (DURATION=10 CONNECTIONS=64 ACCESS_LOG=false RUNS=3)
#   PROXY_BINS="/path/a /path/b" compares several builds of the proxy in one session.
#   PIN="taskset -c 0,1" (any command prefix) is applied to nginx and every proxy alike.
# Each run measures nginx, HAProxy, then each proxy, in turn (alternating on a noisy machine);
# the table holds the medians over RUNS runs, plus every run's figures above it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
read -r -a proxy_bins <<<"${PROXY_BINS:-$target/release/courser-proxy}"
runs="${RUNS:-3}"
pin="${PIN:-}"
duration="${DURATION:-10}"
connections="${CONNECTIONS:-64}"
access_log="${ACCESS_LOG:-false}"
# Access lines are info-level events of target `access`: let them through when asked for.
rust_log=warn
[[ "$access_log" == true ]] && rust_log="warn,access=info"
work="$(mktemp -d /tmp/courser-p1.XXXXXX)"
backend_ports=(18081 18082 18083 18084)
nginx_port=18090
haproxy_port=18089
proxy_port=18091
metrics_port=18092

missing=()
for tool in nginx haproxy wrk; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if (( ${#missing[@]} )); then
  sudo=""; [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
    || { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
fi
for bin in "${proxy_bins[@]}"; do
  [[ -x "$bin" ]] || { echo "missing $bin: cargo build --release -p courser-proxy" >&2; exit 1; }
done

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for conf in backends lb haproxy; do
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


# HAProxy as the same kind of balancer: 2 threads, round robin, idle backend connections
# kept and shared between client connections (http-reuse always; nginx's keepalive pool).
haproxy_servers=""
for port in "${backend_ports[@]}"; do
  haproxy_servers+="  server b$port 127.0.0.1:$port
"
done
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 2
  maxconn 8192
  pidfile $work/haproxy.pid
  daemon
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend public
  bind 127.0.0.1:$haproxy_port
  default_backend api
backend api
  balance roundrobin
  http-reuse always
$haproxy_servers
CONF

nginx -c "$work/backends.conf" -p "$work"
$pin nginx -c "$work/lb.conf" -p "$work"
haproxy -c -q -f "$work/haproxy.cfg"
$pin haproxy -f "$work/haproxy.cfg"

proxy_pids=()
for i in "${!proxy_bins[@]}"; do
  port=$((proxy_port + 10 * i))
  cat > "$work/proxy$i.toml" <<CONF
listen = "127.0.0.1:$port"
metrics_listen = "127.0.0.1:$((metrics_port + 10 * i))"
threads = 2
backends = [${proxy_backends%,}]
access_log = $access_log
upgrade_sock = "$work/upgrade$i.sock"
CONF
  RUST_LOG="$rust_log" $pin "${proxy_bins[$i]}" --config "$work/proxy$i.toml" > "$work/proxy$i.log" 2>&1 &
  pids+=($!)
  proxy_pids+=($!)
done
sleep 1

proc_pids() { # name -> pids of that balancer's processes
  if [[ "$1" == nginx ]]; then
    echo "$(cat "$work/lb.pid") $(pgrep -P "$(cat "$work/lb.pid")" | tr '\n' ' ')"
  elif [[ "$1" == haproxy ]]; then
    cat "$work/haproxy.pid"
  else
    echo "${proxy_pids[$1]}"
  fi
}
rss_sum_kb() { # peak (VmHWM) summed over pids
  local total=0
  for pid in "$@"; do
    total=$((total + $(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
cpu_ticks() { # utime+stime summed over pids, clock ticks
  local total=0
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
to_ms() { # wrk latency ("812.00us", "4.16ms", "1.02s") -> ms
  awk -v v="$1" 'BEGIN{ n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n*=1; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}

run() { # name port -> "rps p50_ms p99_ms cpu_ms_per_1k errors"
  local name="$1" port="$2" procs t0 t1
  procs="$(proc_pids "$name")"
  wrk -t1 -c"$connections" -d2s "http://127.0.0.1:$port/review/1" >/dev/null   # warm-up
  t0=$(cpu_ticks $procs)
  wrk -t1 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$port/review/1" > "$work/$name.wrk"
  t1=$(cpu_ticks $procs)
  local rps p50 p99 errors total
  rps="$(awk '/Requests\/sec/ {print $2}' "$work/$name.wrk")"
  total="$(awk '/requests in/ {print $1}' "$work/$name.wrk")"
  p50="$(to_ms "$(awk '$1=="50%" {print $2}' "$work/$name.wrk")")"
  p99="$(to_ms "$(awk '$1=="99%" {print $2}' "$work/$name.wrk")")"
  errors="$(awk '/Non-2xx|Socket errors/ {print}' "$work/$name.wrk" | tr -s ' \n' '_' )"
  local cpu
  cpu="$(awk -v t="$((t1 - t0))" -v n="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", t / hz * 1000 / n * 1000}')"
  echo "$rps $p50 $p99 $cpu ${errors:-none}"
}

curl -fsS "http://127.0.0.1:$nginx_port/" | wc -c | grep -q 1024 || { echo "nginx lb not answering 1 KiB" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$haproxy_port/" | wc -c | grep -q 1024 || { echo "haproxy not answering 1 KiB" >&2; exit 1; }
for i in "${!proxy_bins[@]}"; do
  curl -fsS "http://127.0.0.1:$((proxy_port + 10 * i))/" | wc -c | grep -q 1024 || { echo "${proxy_bins[$i]} not answering 1 KiB" >&2; exit 1; }
done

names=(nginx haproxy)
labels=("nginx (2 w)" "haproxy (2 t)")
ports=($nginx_port $haproxy_port)
for i in "${!proxy_bins[@]}"; do
  names+=("$i")
  label="courser-proxy"
  (( ${#proxy_bins[@]} > 1 )) && label="proxy:$(basename "${proxy_bins[$i]}")"
  labels+=("$label")
  ports+=($((proxy_port + 10 * i)))
done

echo "P1 $(date -u +%FT%TZ) $(nproc) cores; wrk -t1 -c$connections -d${duration}s; 4 nginx backends, 1 KiB JSON; proxy access log $access_log; ${pin:+pinned: $pin; }$runs runs"
printf '%-4s %-22s %11s %9s %9s %9s  %s\n' run balancer "requests/s" "p50 ms" "p99 ms" "cpu ms/1k" errors
for r in $(seq 1 "$runs"); do
  for j in "${!names[@]}"; do
    line="$(run "${names[$j]}" "${ports[$j]}")"
    echo "$line" >> "$work/results.${names[$j]}"
    read -r rps p50 p99 cpu err <<<"$line"
    printf '%-4s %-22s %11s %9s %9s %9s  %s\n' "$r" "${labels[$j]}" "$rps" "$p50" "$p99" "$cpu" "$err"
  done
done

median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
echo
echo "medians of $runs runs; peak RSS is VmHWM over the whole session (nginx: master + workers)"
printf '%-22s %11s %9s %9s %9s %13s %8s\n' balancer "requests/s" "p50 ms" "p99 ms" "cpu ms/1k" "peak RSS MiB" "vs nginx"
nginx_med=""
for j in "${!names[@]}"; do
  f="$work/results.${names[$j]}"
  rps=$(awk '{print $1}' "$f" | median)
  p50=$(awk '{print $2}' "$f" | median)
  p99=$(awk '{print $3}' "$f" | median)
  cpu=$(awk '{print $4}' "$f" | median)
  rss=$(rss_sum_kb $(proc_pids "${names[$j]}"))
  [[ -z "$nginx_med" ]] && nginx_med=$rps
  printf '%-22s %11s %9s %9s %9s %13s %7.2fx\n' "${labels[$j]}" "$rps" "$p50" "$p99" "$cpu" "$(awk "BEGIN{printf \"%.1f\", $rss/1024}")" "$(awk "BEGIN{print $rps/$nginx_med}")"
done
