#!/usr/bin/env python3
"""Make a clawgate session-binding proof (the `Clawgate-Proof` header value).

Needs only the `cryptography` package (pip install cryptography). The same
code is shown in docs/session-binding.md; the test suite runs this file and
checks that it reproduces tests/data/binding-vectors.json byte for byte.

    make_proof.py KEY_FILE METHOD PATH_AND_QUERY @TOKEN_FILE [--iat UNIX] [--jti JTI]
    make_proof.py --public KEY_FILE     # prints client_key and its k4.pid
    make_proof.py --check-vectors tests/data/binding-vectors.json

TOKEN may be given inline, but @FILE keeps it out of the process list.

KEY_FILE holds the client key as one PASERK `k4.secret.` line (what
`clawgate request` keeps in ~/.zeroclaw/client/client.key).
"""
import argparse
import base64
import hashlib
import json
import os
import time
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pae(*pieces: bytes) -> bytes:
    """PASETO pre-authentication encoding: counts and lengths as LE64."""
    out = len(pieces).to_bytes(8, "little")
    for piece in pieces:
        out += len(piece).to_bytes(8, "little") + piece
    return out


def load_key(secret_paserk: str):
    """k4.secret = base64url(32-byte Ed25519 seed || 32-byte public key)."""
    prefix = "k4.secret."
    if not secret_paserk.startswith(prefix):
        raise ValueError("not a k4.secret key")
    raw = unb64(secret_paserk[len(prefix):])
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if public != raw[32:]:
        raise ValueError("public half does not match the seed")
    return key, "k4.public." + b64(public)


def kpid(public_paserk: str) -> str:
    """The key's k4.pid: the session token's cnf.kpid."""
    digest = hashlib.blake2b(b"k4.pid." + public_paserk.encode(), digest_size=33)
    return "k4.pid." + b64(digest.digest())


def make_proof(secret_paserk, method, uri, token, iat=None, jti=None) -> str:
    key, public = load_key(secret_paserk)
    iat = int(time.time()) if iat is None else iat
    claims = {
        "htm": method,  # exactly as sent, e.g. "GET"
        "htu": uri,  # path and query exactly as sent, e.g. "/v1/items?limit=5"
        "iat": datetime.fromtimestamp(iat, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "jti": jti or b64(os.urandom(32)),  # fresh for every request
        "ath": b64(hashlib.sha256(token.encode()).digest()),
        "key": public,
    }
    payload = json.dumps(claims, separators=(",", ":")).encode()
    signature = key.sign(pae(b"v4.public.", payload, b"", b""))
    return "v4.public." + b64(payload + signature)


def check_vectors(path: str) -> int:
    """Re-creates every `signed` case of the vectors file; 0 if all match."""
    with open(path) as f:
        vectors = json.load(f)
    bad = 0
    for case in vectors["cases"]:
        s = case.get("signed")
        if not s:
            continue
        secret = vectors[s["key"] + "_key"]["secret"]
        made = make_proof(secret, s["htm"], s["htu"], s["token"], s["iat"], s["jti"])
        if made != case["proof"]:
            print("MISMATCH:", case["name"])
            bad += 1
    print("ok" if bad == 0 else f"{bad} mismatches")
    return 1 if bad else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("key_file", help="the client key file (or the vectors file)")
    parser.add_argument("method", nargs="?")
    parser.add_argument("uri", nargs="?")
    parser.add_argument("token", nargs="?")
    parser.add_argument("--iat", type=int)
    parser.add_argument("--jti")
    parser.add_argument("--public", action="store_true")
    parser.add_argument("--check-vectors", action="store_true")
    args = parser.parse_args()
    if args.check_vectors:
        raise SystemExit(check_vectors(args.key_file))
    with open(args.key_file) as f:
        secret = f.read().strip()
    if args.public:
        _, public = load_key(secret)
        print(public)
        print(kpid(public))
        return
    if not (args.method and args.uri and args.token):
        parser.error("METHOD, PATH_AND_QUERY and TOKEN are required")
    token = args.token
    if token.startswith("@"):
        with open(token[1:]) as f:
            token = f.read().strip()
    print(make_proof(secret, args.method, args.uri, token, args.iat, args.jti))


if __name__ == "__main__":
    main()
