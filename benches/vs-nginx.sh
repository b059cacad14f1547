#!/usr/bin/env bash
# clawgate against nginx, side by side, on loopback only.
#
#   bash benches/vs-nginx.sh            # 3 rounds of A B, 10 s per load run
#   ROUNDS=5 SECONDS_PER_RUN=15 CONNECTIONS=64 bash benches/vs-nginx.sh
#
# One plain-HTTP upstream (an nginx instance of its own, `return 200`), then
# two TLS 1.3 front doors in front of it:
#   A. nginx as a TLS 1.3 reverse proxy WITHOUT any authentication
#      (TLS 1.3 only, AES-256-GCM + ChaCha20, ECDSA P-256, keepalive to the
#      upstream, access_log off, 2 workers);
#   B. clawgate with its default config (only paths, ports and the upstream
#      URL set) and a valid bearer token on every request.
# Both serve the same ECDSA P-256 certificate (clawgate's generated one).
# Runs alternate A B A B; each prints requests/s, p50/p99 latency (wrk) and
# the server's CPU per request (utime+stime of every process and thread of
# that server, from /proc/PID/stat, divided by the requests wrk completed).
# Then handshakes/s (wrk with `Connection: close`: a new TLS connection and
# one request each) and KiB of server memory per idle TLS connection (RSS
# delta over N connections that did one request and then sit idle).
#
# BARE=1 adds a third door after each of them: examples/bare_proxy.rs, the
# same stack as clawgate (tokio-rustls, hyper, hyper-util's client) with no
# authentication and nothing else, so the figures show what the stack costs
# before clawgate adds anything. It prints its own rows and ratios to nginx.
#
# Installs nginx and wrk with apt-get when missing (as root). Only 127.0.0.1
# is ever a target.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-400}"

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "== installing $2" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    fi
    command -v "$1" >/dev/null 2>&1 || { echo "vs-nginx: $1 is missing and could not be installed" >&2; exit 1; }
}
need nginx nginx-light
need wrk wrk
need python3 python3

# shellcheck source=benches/lib.sh
. benches/lib.sh

# CLAWGATE_BIN=path compares another build (e.g. an older commit's).
release_bin

start_upstream

# --- clawgate: default config, own directories and ports.
write_gateway_config
start_gateway "$bin"
status="$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/certs/ca.crt" -H "Authorization: Bearer $token" "https://localhost:$cg_port/bench")"
[ "$status" = 200 ] || { echo "vs-nginx: clawgate did not answer 200 with the token (got $status)"; cat "$work/clawgate.out"; exit 1; }

# --- optionally, the bare stack (no auth), same certificate and upstream.
BARE="${BARE:-0}"
if [ "$BARE" = 1 ]; then
    echo "== building examples/bare_proxy (release)" >&2
    cargo build --release -q --example bare_proxy
    bare_port="$(free_port)"
    target/release/examples/bare_proxy "$bare_port" "$work/certs/gateway.crt" "$work/certs/gateway.key" "$up_port" >"$work/bare.out" 2>&1 &
    bare_pid=$!
    pids+=($bare_pid)
    for _ in $(seq 100); do curl -s -o /dev/null --cacert "$work/certs/ca.crt" "https://localhost:$bare_port/" && break; sleep 0.1; done
fi

# --- nginx as the TLS 1.3 reverse proxy, no auth, same certificate.
write_nginx_proxy_config
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_master=$!
pids+=($nginx_master)
for _ in $(seq 100); do curl -s -o /dev/null --cacert "$work/certs/ca.crt" "https://localhost:$nginx_port/" && break; sleep 0.1; done

# Every process of a server: the master and its children (nginx workers).
server_pids() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }
cpu_ticks() {
    local t=0
    for p in $(server_pids "$1"); do
        [ -r "/proc/$p/stat" ] || continue
        # utime and stime are fields 14 and 15 (after the "(comm)" field).
        t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$t"
}
rss_kib() {
    local t=0
    for p in $(server_pids "$1"); do
        t=$((t + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
hz="$(getconf CLK_TCK)"

# run_wrk NAME PID PORT EXTRA-WRK-ARGS… → "rps p50_ms p99_ms cpu_us_per_req"
run_wrk() {
    local pid="$1" port="$2"; shift 2
    local before after out
    before="$(cpu_ticks "$pid")"
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "$@" "https://127.0.0.1:$port/bench")"
    after="$(cpu_ticks "$pid")"
    python3 - "$before" "$after" "$hz" <<'PY' "$out"
import re, sys
before, after, hz = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = sys.argv[4]
def ms(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s)
    if not m:
        sys.exit(f"unreadable wrk latency {s!r} in:\n{out}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
if errors:
    sys.exit(f"non-2xx responses: {errors.group(1)}")
cpu_us = (after - before) / hz * 1e6 / max(reqs, 1)
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {cpu_us:.1f}")
PY
}

# idle_kib PID PORT → KiB of server RSS per idle TLS connection
idle_kib() {
    local pid="$1" port="$2" before after
    before="$(rss_kib "$pid")"
    python3 - "$port" "$IDLE_CONNECTIONS" "$work/certs/ca.crt" "$work/ready" <<'PY' &
import socket, ssl, sys, time, os
port, n, ca, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
conns = []
for i in range(n):
    raw = socket.socket()
    raw.bind((f"127.0.0.{2 + i % 8}", 0))   # spread over loopback sources
    raw.connect(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    s.recv(4096)
    conns.append(s)
open(ready, "w").close()
time.sleep(8)
PY
    local client=$!
    for _ in $(seq 300); do [ -e "$work/ready" ] && break; sleep 0.1; done
    sleep 1
    after="$(rss_kib "$pid")"
    wait "$client" || true
    rm -f "$work/ready"
    python3 -c "print(f'{($after - $before) / $IDLE_CONNECTIONS:.1f}')"
}

ratio() { python3 -c "a, b = float('$1'), float('$2'); print(f'{a / b:.2f}' if b else 'n/a')"; }

printf '%-6s %-9s %10s %8s %8s %12s\n' round server req/s p50_ms p99_ms cpu_us/req
declare -a N_RPS N_P50 N_P99 N_CPU C_RPS C_P50 C_P99 C_CPU B_RPS B_P50 B_P99 B_CPU
for r in $(seq "$ROUNDS"); do
    read -r rps p50 p99 cpu < <(run_wrk "$nginx_master" "$nginx_port")
    printf '%-6s %-9s %10s %8s %8s %12s\n' "$r" nginx "$rps" "$p50" "$p99" "$cpu"
    N_RPS+=("$rps"); N_P50+=("$p50"); N_P99+=("$p99"); N_CPU+=("$cpu")
    read -r rps p50 p99 cpu < <(run_wrk "$cg_pid" "$cg_port" -H "Authorization: Bearer $token")
    printf '%-6s %-9s %10s %8s %8s %12s\n' "$r" clawgate "$rps" "$p50" "$p99" "$cpu"
    C_RPS+=("$rps"); C_P50+=("$p50"); C_P99+=("$p99"); C_CPU+=("$cpu")
    if [ "$BARE" = 1 ]; then
        read -r rps p50 p99 cpu < <(run_wrk "$bare_pid" "$bare_port")
        printf '%-6s %-9s %10s %8s %8s %12s\n' "$r" bare "$rps" "$p50" "$p99" "$cpu"
        B_RPS+=("$rps"); B_P50+=("$p50"); B_P99+=("$p99"); B_CPU+=("$cpu")
    fi
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo
echo "== handshakes: a new TLS connection and one request each (Connection: close)"
read -r hn _ _ _ < <(run_wrk "$nginx_master" "$nginx_port" -H "Connection: close")
read -r hc _ _ _ < <(run_wrk "$cg_pid" "$cg_port" -H "Connection: close" -H "Authorization: Bearer $token")
read -r hn2 _ _ _ < <(run_wrk "$nginx_master" "$nginx_port" -H "Connection: close")
read -r hc2 _ _ _ < <(run_wrk "$cg_pid" "$cg_port" -H "Connection: close" -H "Authorization: Bearer $token")
hn="$(median "$hn" "$hn2")"; hc="$(median "$hc" "$hc2")"
echo "nginx $hn/s  clawgate $hc/s"
if [ "$BARE" = 1 ]; then
    read -r hb _ _ _ < <(run_wrk "$bare_pid" "$bare_port" -H "Connection: close")
    echo "bare $hb/s"
fi

echo
echo "== idle TLS connections ($IDLE_CONNECTIONS, one request each, then idle)"
in="$(idle_kib "$nginx_master" "$nginx_port")"
ic="$(idle_kib "$cg_pid" "$cg_port")"
echo "nginx $in KiB/conn  clawgate $ic KiB/conn"
[ "$BARE" = 1 ] && ib="$(idle_kib "$bare_pid" "$bare_port")" && echo "bare $ib KiB/conn"

nr="$(median "${N_RPS[@]}")"; cr="$(median "${C_RPS[@]}")"
n50="$(median "${N_P50[@]}")"; c50="$(median "${C_P50[@]}")"
n99="$(median "${N_P99[@]}")"; c99="$(median "${C_P99[@]}")"
nc="$(median "${N_CPU[@]}")"; cc="$(median "${C_CPU[@]}")"
echo
echo "== summary (medians of $ROUNDS rounds; clawgate with a token, nginx without auth)"
printf '%-34s %10s %10s %8s\n' metric nginx clawgate ratio
printf '%-34s %10s %10s %8s\n' "keep-alive requests/s" "$nr" "$cr" "$(ratio "$cr" "$nr")"
printf '%-34s %10s %10s %8s\n' "server CPU µs/request" "$nc" "$cc" "$(ratio "$cc" "$nc")"
printf '%-34s %10s %10s %8s\n' "latency p50 ms" "$n50" "$c50" "$(ratio "$c50" "$n50")"
printf '%-34s %10s %10s %8s\n' "latency p99 ms" "$n99" "$c99" "$(ratio "$c99" "$n99")"
printf '%-34s %10s %10s %8s\n' "handshakes+request/s" "$hn" "$hc" "$(ratio "$hc" "$hn")"
printf '%-34s %10s %10s %8s\n' "KiB per idle TLS connection" "$in" "$ic" "$(ratio "$ic" "$in")"
if [ "$BARE" = 1 ]; then
    br="$(median "${B_RPS[@]}")"; b50="$(median "${B_P50[@]}")"
    b99="$(median "${B_P99[@]}")"; bc="$(median "${B_CPU[@]}")"
    echo
    echo "== the bare stack (examples/bare_proxy, no auth) against nginx"
    printf '%-34s %10s %10s %8s\n' metric nginx bare ratio
    printf '%-34s %10s %10s %8s\n' "keep-alive requests/s" "$nr" "$br" "$(ratio "$br" "$nr")"
    printf '%-34s %10s %10s %8s\n' "server CPU µs/request" "$nc" "$bc" "$(ratio "$bc" "$nc")"
    printf '%-34s %10s %10s %8s\n' "latency p50 ms" "$n50" "$b50" "$(ratio "$b50" "$n50")"
    printf '%-34s %10s %10s %8s\n' "latency p99 ms" "$n99" "$b99" "$(ratio "$b99" "$n99")"
    printf '%-34s %10s %10s %8s\n' "handshakes+request/s" "$hn" "$hb" "$(ratio "$hb" "$hn")"
    printf '%-34s %10s %10s %8s\n' "KiB per idle TLS connection" "$in" "$ib" "$(ratio "$ib" "$in")"
fi
echo "machine: $(nproc) cores, $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
