# Shared by benches/vs-nginx.sh and benches/callgrind.sh (sourced): the
# work directory, free ports, the plain-HTTP upstream, clawgate's default
# config and nginx as a TLS 1.3 reverse proxy, so both measure the same
# setup. Only 127.0.0.1 is ever used.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# $work (removed at exit) and $pids (killed at exit).
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

up_port="$(free_port)"; nginx_port="$(free_port)"; cg_port="$(free_port)"; metrics_port="$(free_port)"
mkdir -p "$work/up" "$work/nginx"

# The upstream: a separate nginx (`return 200`), so its CPU is counted for
# neither door.
start_upstream() {
    cat >"$work/up/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/up/nginx.pid;
error_log $work/up/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$up_port;
        location / { return 200 "ok\n"; }
    }
}
EOF
    nginx -p "$work/up" -c "$work/up/nginx.conf" &
    pids+=($!)
}

# clawgate's default config: only paths, ports and the upstream URL set.
write_gateway_config() {
    cat >"$work/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$cg_port"
[tls]
cert_dir = "$work/certs"
[tokens]
keys_dir = "$work/keys"
[state]
dir = "$work/state"
[upstream]
url = "http://127.0.0.1:$up_port"
[metrics]
listen = "127.0.0.1:$metrics_port"
[log]
level = "warn"
EOF
}

# nginx as the TLS 1.3 reverse proxy without auth, with clawgate's
# generated certificate (TLS 1.3 only, the same two suites, keepalive to
# the upstream, access_log off, 2 workers). $1: an extra top-level line.
write_nginx_proxy_config() {
    cat >"$work/nginx/nginx.conf" <<EOF
${1:-}
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$up_port; keepalive 64; }
    server {
        listen 127.0.0.1:$nginx_port ssl;
        ssl_certificate $work/certs/gateway.crt;
        ssl_certificate_key $work/certs/gateway.key;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_session_tickets off;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

# The release build to measure: $CLAWGATE_BIN (e.g. an older commit's), or
# target/release/clawgate built here. Sets $bin.
release_bin() {
    if [ -n "${CLAWGATE_BIN:-}" ]; then
        bin="$CLAWGATE_BIN"
    else
        echo "== building clawgate (release)" >&2
        cargo build --release -q
        bin="$PWD/target/release/clawgate"
    fi
}

# clawgate ($1) with the config of write_gateway_config, serving once its
# certificate exists and /health answers; then a bearer token for it. Sets
# $cg_pid (killed at exit) and $token.
start_gateway() {
    "$1" serve --config "$work/gateway.toml" >"$work/clawgate.out" 2>&1 &
    cg_pid=$!
    pids+=($cg_pid)
    for _ in $(seq 100); do
        [ -s "$work/certs/gateway.crt" ] \
            && curl -s -o /dev/null --cacert "$work/certs/ca.crt" "https://localhost:$cg_port/health" \
            && break
        sleep 0.1
    done
    token="$("$1" token issue --sub bench --ttl 2h --config "$work/gateway.toml")"
}
