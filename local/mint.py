"""Mints a bearer token for a local user: `python -m local.mint u-alice` (or
`make token USER=u-alice`). The key is the one `make up` created under .local/."""

from __future__ import annotations

import argparse

from local.issuer import LocalIssuer
from local.settings import ISSUER_KEY


def main() -> None:
    parser = argparse.ArgumentParser(description="Mint a bearer token for a local user")
    parser.add_argument("user_id", help="the user id, e.g. u-alice")
    parser.add_argument("--hours", type=int, default=12)
    parser.add_argument("--admin", action="store_true", help="add the admin group")
    args = parser.parse_args()
    issuer = LocalIssuer.load_or_create(ISSUER_KEY)
    print(issuer.mint(args.user_id, ttl_seconds=args.hours * 3600,
                      groups=["admin"] if args.admin else None))


if __name__ == "__main__":
    main()
