#!/usr/bin/env python3
"""Checks and mints session macaroons with Debian's python3-pymacaroons, independently of the coordinator's code.

usage: verify_macaroon.py verify --key HEX --session ID --now UNIX_SECONDS TOKEN
       verify_macaroon.py mint --key HEX --identifier ID --location LOCATION [--v2] [--caveat PREDICATE ...]

verify: Macaroon.deserialize(TOKEN), then pymacaroons' Verifier with the root key; the caveats it accepts are
`session_id = ID` (this ID) and `expires = T` (T in Unix seconds or ISO-8601 UTC, later than --now). Prints
"ok <identifier> <caveat>|<caveat>…" and exits 0, or "bad: <reason>" and exits 1.
mint: a macaroon with those caveats, serialized by Macaroon.serialize() (format V1, pymacaroons' default; V2 with --v2).
"""
import argparse
import sys
from datetime import datetime, timezone

from pymacaroons import MACAROON_V1, MACAROON_V2, Macaroon, Verifier


def parse_time(value):
    if value.isdigit():
        return int(value)
    if value.endswith("Z"):
        return int(datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())
    raise ValueError("unreadable time " + value)


def verify(args):
    try:
        macaroon = Macaroon.deserialize(args.token)
    except Exception as error:  # pymacaroons raises several kinds for a malformed token
        return "bad: does not deserialize: %s" % error
    verifier = Verifier()
    verifier.satisfy_exact("session_id = " + args.session)
    verifier.satisfy_general(lambda predicate: predicate.startswith("expires = ")
                             and parse_time(predicate[len("expires = "):]) > args.now)
    try:
        verifier.verify(macaroon, bytes.fromhex(args.key))
    except Exception as error:
        return "bad: %s" % error
    identifier = macaroon.identifier_bytes.decode("ascii")
    return "ok %s %s" % (identifier, "|".join(caveat.caveat_id_bytes.decode("utf-8") for caveat in macaroon.caveats))


def mint(args):
    macaroon = Macaroon(location=args.location, identifier=args.identifier, key=bytes.fromhex(args.key),
                        version=MACAROON_V2 if args.v2 else MACAROON_V1)
    for caveat in args.caveat:
        macaroon.add_first_party_caveat(caveat)
    return macaroon.serialize()


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    verify_command = commands.add_parser("verify")
    verify_command.add_argument("--key", required=True)
    verify_command.add_argument("--session", required=True)
    verify_command.add_argument("--now", required=True, type=int)
    verify_command.add_argument("token")
    mint_command = commands.add_parser("mint")
    mint_command.add_argument("--key", required=True)
    mint_command.add_argument("--identifier", required=True)
    mint_command.add_argument("--location", required=True)
    mint_command.add_argument("--v2", action="store_true")
    mint_command.add_argument("--caveat", action="append", default=[])
    args = parser.parse_args()
    if args.command == "mint":
        print(mint(args))
        return 0
    verdict = verify(args)
    print(verdict)
    return 0 if verdict.startswith("ok ") else 1


if __name__ == "__main__":
    sys.exit(main())
