#!/usr/bin/env python3
"""Verifies AITBC receipts as AITBC's own verifier does, independently of the coordinator's code.

usage: verify_receipt.py [--trust KEY_ID ...] FILE|-

FILE (or stdin) holds one receipt (a JSON object) or a JSON array of receipts. For each receipt: json.loads it, drop
`signature` and the members whose value is None, re-serialise with json.dumps(sort_keys=True, separators=(",", ":")),
base64url-decode signature.key_id (the Ed25519 public key) and signature.sig, and verify with python3-cryptography.
With --trust, key_id must also be one of the given keys. Prints "<index> ok" or "<index> bad: <reason>" per receipt and
exits 1 if any receipt fails.
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check(receipt, trusted):
    if not isinstance(receipt, dict):
        return "not an object"
    signature = receipt.get("signature")
    if not isinstance(signature, dict):
        return "no signature"
    if signature.get("alg") != "Ed25519":
        return "alg is not Ed25519"
    key_id, sig = signature.get("key_id"), signature.get("sig")
    if not isinstance(key_id, str) or not isinstance(sig, str):
        return "malformed signature"
    if trusted and key_id not in trusted:
        return "untrusted key " + key_id
    body = {k: v for k, v in receipt.items() if k != "signature" and v is not None}
    message = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    try:
        Ed25519PublicKey.from_public_bytes(b64url_decode(key_id)).verify(b64url_decode(sig), message)
    except (InvalidSignature, ValueError) as error:
        return "signature mismatch " + repr(error)
    return None


def main(argv):
    trusted = set()
    args = argv[1:]
    while len(args) >= 2 and args[0] == "--trust":
        trusted.add(args[1])
        args = args[2:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    text = sys.stdin.read() if args[0] == "-" else open(args[0], encoding="utf-8").read()
    data = json.loads(text)
    receipts = data if isinstance(data, list) else [data]
    failed = 0
    for index, receipt in enumerate(receipts):
        reason = check(receipt, trusted)
        print(f"{index} ok" if reason is None else f"{index} bad: {reason}")
        failed += reason is not None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
