#!/usr/bin/env bash
# A CPU profile of clawgate under keep-alive load, on loopback only:
#
#   bash benches/perf.sh                 # builds release, records, prints the top entries
#   CLAWGATE_BIN=path OUT=/tmp/perf.data bash benches/perf.sh
#
# The setup of benches/vs-nginx.sh (one plain-HTTP nginx upstream, clawgate
# with its default config and a bearer token on every request); wrk -t2 -c64
# warms up for 3 s, then `perf record -F 1999 -g` samples every thread of
# clawgate for 8 s of a 10 s run. Needs perf (linux-perf), nginx and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in perf nginx wrk; do
    command -v "$tool" >/dev/null 2>&1 || { echo "perf.sh: $tool is missing" >&2; exit 1; }
done

# shellcheck source=benches/lib.sh
. benches/lib.sh

release_bin
out="${OUT:-$work/perf.data}"

start_upstream
write_gateway_config
start_gateway "$bin"

wrk -t2 -c64 -d3s -H "Authorization: Bearer $token" "https://127.0.0.1:$cg_port/bench" >/dev/null
perf record -F 1999 -g -o "$out" -p "$cg_pid" -- sleep 8 2>/dev/null &
recorder=$!
wrk -t2 -c64 -d10s -H "Authorization: Bearer $token" "https://127.0.0.1:$cg_port/bench" | grep -E "Requests/sec|Latency"
wait "$recorder"

echo "== by object"
perf report -i "$out" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -6
echo "== top entries (self)"
perf report -i "$out" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
    | grep '%' | sed 's/  */ /g' | cut -c1-140 | head -"${TOP:-30}"
