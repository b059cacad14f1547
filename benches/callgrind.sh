#!/usr/bin/env bash
# Instructions and syscalls per authenticated keep-alive request, clawgate
# against nginx, on loopback only. Deterministic where wall-clock timings
# are not (a shared, loaded machine): callgrind counts user-space
# instructions whatever else runs; strace counts system calls.
#
#   bash benches/callgrind.sh                 # clawgate and nginx, callgrind + strace
#   ONLY=clawgate bash benches/callgrind.sh   # or ONLY=nginx
#   ONLY=bare bash benches/callgrind.sh       # examples/bare_proxy: the stack, no auth
#   CONNECTIONS=4 WARMUP=100 REQUESTS=500 OUT=/tmp/cg bash benches/callgrind.sh
#
# Same setup as benches/vs-nginx.sh: one plain-HTTP upstream (nginx,
# `return 200`), clawgate with its default config (paths, ports, upstream
# URL; log level warn) and a bearer token on every request, nginx as a TLS
# 1.3 reverse proxy without auth. The client (benches/keepalive_client.py)
# opens CONNECTIONS TLS connections, sends WARMUP requests on each, then the
# counters are zeroed (`callgrind_control --zero`), REQUESTS more per
# connection run, and the counters are dumped before any connection closes:
# the handshakes stay out of the figure. Per request = total / (CONNECTIONS
# × REQUESTS). The callgrind outputs stay in $OUT for
# `callgrind_annotate --inclusive=yes $OUT/clawgate.*`.
#
# callgrind misses kernel time, hence the second count: the same client
# against the uninstrumented server under `strace -c -f` (attached after the
# warm-up, detached after the measured requests).
#
# The clawgate binary: $CLAWGATE_BIN, or a profile build made here
# (target-prof: release without fat LTO, line tables for the annotations).
set -euo pipefail
cd "$(dirname "$0")/.."

ONLY="${ONLY:-all}"
CONNECTIONS="${CONNECTIONS:-4}"
WARMUP="${WARMUP:-100}"
REQUESTS="${REQUESTS:-500}"
OUT="${OUT:-$PWD/target-prof/callgrind}"
mkdir -p "$OUT"

for tool in valgrind callgrind_control strace nginx python3 curl; do
    command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool is missing" >&2; exit 1; }
done

if [ -n "${CLAWGATE_BIN:-}" ]; then
    bin="$CLAWGATE_BIN"
else
    echo "== building clawgate (release, line tables, no fat LTO: target-prof)" >&2
    CARGO_TARGET_DIR="$PWD/target-prof" CARGO_PROFILE_RELEASE_LTO=false \
        CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -q --bin clawgate
    bin="$PWD/target-prof/release/clawgate"
fi

# shellcheck source=benches/lib.sh
. benches/lib.sh

total=$((CONNECTIONS * REQUESTS))

start_upstream

write_gateway_config

wait_health() { # PORT TRIES
    for _ in $(seq "$2"); do
        curl -s -o /dev/null --cacert "$work/certs/ca.crt" "https://localhost:$1/health" && return 0
        sleep 0.2
    done
    echo "callgrind.sh: nothing answers on port $1" >&2
    return 1
}
wait_https() { # PORT TRIES
    for _ in $(seq "$2"); do
        curl -s -o /dev/null --cacert "$work/certs/ca.crt" "https://localhost:$1/" && return 0
        sleep 0.2
    done
    echo "callgrind.sh: nothing answers on port $1" >&2
    return 1
}

# A first, native run creates the certificates and the signing key; the
# token comes from it.
start_gateway "$bin"
wait_health "$cg_port" 50
kill "$cg_pid"; wait "$cg_pid" 2>/dev/null || true

# root workers: vgdb (callgrind_control) must reach them from this shell.
write_nginx_proxy_config "user root;"

client() { # PORT [TOKEN]
    python3 benches/keepalive_client.py "$1" "$work/certs/ca.crt" "$CONNECTIONS" "$WARMUP" "$REQUESTS" "${2:-}"
}

# callgrind_total FILE… → instructions (the `summary:`/`totals:` line)
callgrind_total() {
    local t=0 n
    for f in "$@"; do
        n="$(awk '/^(summary|totals):/ {print $2; exit}' "$f")"
        t=$((t + ${n:-0}))
    done
    echo "$t"
}

per_request() { python3 -c "print(f'{$1 / $total:,.0f}')"; }

callgrind_run() { # NAME PORT [TOKEN] -- COMMAND…
    local name="$1" port="$2" tok="$3"; shift 4
    rm -f "$OUT/$name".*
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.%p" --dump-instr=no \
        --trace-children=yes "$@" >"$work/$name.valgrind" 2>&1 &
    local vpid=$!
    pids+=($vpid)
    if [ "$name" = clawgate ]; then wait_health "$port" 300; else wait_https "$port" 300; fi
    # Every callgrind-run process of this server (nginx: master and workers).
    local ids; ids="$vpid $( (pgrep -P "$vpid" || true) | tr "\n" " ")"
    BEFORE="for p in $ids; do callgrind_control --zero \$p >/dev/null 2>&1 || true; done" \
    AFTER="for p in $ids; do callgrind_control --dump=measured \$p >/dev/null 2>&1 || true; done" \
        client "$port" "$tok"
    kill "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    local files
    files="$(grep -l '^desc: Trigger: .*measured' "$OUT/$name".* 2>/dev/null || true)"
    [ -n "$files" ] || { echo "callgrind.sh: no dump for $name" >&2; cat "$work/$name.valgrind" >&2; return 1; }
    # shellcheck disable=SC2086
    local instr; instr="$(callgrind_total $files)"
    echo "$name callgrind: $instr instructions / $total requests = $(per_request "$instr") instructions/request"
    echo "$name callgrind files: $files"
}

strace_run() { # NAME PORT [TOKEN] -- COMMAND…
    local name="$1" port="$2" tok="$3"; shift 4
    "$@" >"$work/$name.native" 2>&1 &
    local spid=$!
    pids+=($spid)
    if [ "$name" = clawgate ]; then wait_health "$port" 100; else wait_https "$port" 100; fi
    local ids; ids="$spid $( (pgrep -P "$spid" || true) | tr "\n" " ")"
    local args=()
    for p in $ids; do args+=(-p "$p"); done
    # strace attaches in the BEFORE hook and is stopped in the AFTER hook.
    BEFORE="strace -c -f -o $work/$name.strace ${args[*]} & echo \$! > $work/strace.pid; sleep 1" \
    AFTER="kill -INT \$(cat $work/strace.pid); while kill -0 \$(cat $work/strace.pid) 2>/dev/null; do sleep 0.1; done" \
        client "$port" "$tok"
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    local calls; calls="$(awk '$NF == "total" {print $4}' "$work/$name.strace")"
    echo "$name strace: $calls syscalls / $total requests = $(python3 -c "print(f'{$calls / $total:.2f}')") syscalls/request"
    sed -n '1,14p' "$work/$name.strace" | sed "s/^/  /"
}

echo "== $CONNECTIONS connections × $REQUESTS requests measured (after $WARMUP each)"
if [ "$ONLY" = all ] || [ "$ONLY" = clawgate ]; then
    callgrind_run clawgate "$cg_port" "$token" -- "$bin" serve --config "$work/gateway.toml"
    strace_run clawgate "$cg_port" "$token" -- "$bin" serve --config "$work/gateway.toml"
fi
if [ "$ONLY" = bare ]; then
    # The floor: the same stack (tokio-rustls, hyper, hyper-util's client)
    # without clawgate (examples/bare_proxy.rs), same build settings;
    # BARE_BIN=path for another build.
    bare_bin="${BARE_BIN:-$PWD/target-prof/release/examples/bare_proxy}"
    if [ -z "${BARE_BIN:-}" ]; then
        CARGO_TARGET_DIR="$PWD/target-prof" CARGO_PROFILE_RELEASE_LTO=false \
            CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -q --example bare_proxy
    fi
    bare=("$bare_bin" "$cg_port" "$work/certs/gateway.crt" "$work/certs/gateway.key" "$up_port")
    callgrind_run bare "$cg_port" "" -- "${bare[@]}"
    strace_run bare "$cg_port" "" -- "${bare[@]}"
fi
if [ "$ONLY" = all ] || [ "$ONLY" = nginx ]; then
    callgrind_run nginx "$nginx_port" "" -- nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
    strace_run nginx "$nginx_port" "" -- nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
fi
