#!/usr/bin/env python3
"""A fixed number of keep-alive HTTPS requests, for instruction and syscall
counts (benches/callgrind.sh). Loopback only.

    keepalive_client.py PORT CA_FILE CONNECTIONS WARMUP MEASURED [TOKEN]

Each connection runs in its own thread: one TLS 1.3 connection, WARMUP
sequential `GET /bench` requests on it (the bearer token on each when
given), then, once every connection is warm, the shell command in $BEFORE
runs (e.g. `callgrind_control --zero`), then MEASURED requests per
connection, then $AFTER (e.g. `callgrind_control --dump`), and only then
do the connections close: handshakes and closes stay out of the window.
Exits non-zero unless every answer is 200.
"""

import os
import socket
import ssl
import subprocess
import sys
import threading

port, ca, conns = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
warmup, measured = int(sys.argv[4]), int(sys.argv[5])
token = sys.argv[6] if len(sys.argv) > 6 else ""

ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
request = b"GET /bench HTTP/1.1\r\nHost: localhost\r\n"
if token:
    request += b"Authorization: Bearer " + token.encode() + b"\r\n"
request += b"\r\n"
failures = []


def read_response(s, buf):
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed in the body")
            rest += chunk
        return status, rest[n:]
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while b"0\r\n\r\n" not in rest:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed in the body")
            rest += chunk
        return status, rest.partition(b"0\r\n\r\n")[2]
    return status, rest


def phase_hook(name):
    cmd = os.environ.get(name)
    if cmd:
        subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)


warm = threading.Barrier(conns, action=lambda: phase_hook("BEFORE"))
finished = threading.Barrier(conns, action=lambda: phase_hook("AFTER"))


def requests(s, buf, n):
    for _ in range(n):
        s.sendall(request)
        status, buf = read_response(s, buf)
        if status != 200:
            raise RuntimeError(f"status {status}")
    return buf


def run():
    s = None
    try:
        raw = socket.create_connection(("127.0.0.1", port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        buf = requests(s, b"", warmup)
        warm.wait()
        requests(s, buf, measured)
        finished.wait()
    except Exception as e:  # noqa: BLE001 - reported below
        failures.append(repr(e))
        warm.abort()
        finished.abort()
    finally:
        if s is not None:
            s.close()


threads = [threading.Thread(target=run) for _ in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failures:
    sys.exit(f"keepalive_client: failures: {failures[:5]}")
