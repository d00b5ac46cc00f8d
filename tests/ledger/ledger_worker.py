"""One client process of the concurrency test: a fresh identity registers COUNT random keys.

``python ledger_worker.py URL COUNT``: one JSON receipt per line on stdout, in order; exit 0 when
all were registered. Imports no torch (only the identity and the registry client).
"""

from __future__ import annotations

import json
import secrets
import sys

from backmark.identity import new_identity
from backmark.ledger.client import RegistryClient


def main() -> int:
    url, count = sys.argv[1], int(sys.argv[2])
    owner = new_identity()
    with RegistryClient(url, timeout=10.0, deadline=90.0) as client:
        for _ in range(count):
            receipt = client.register(owner, vk_digest=secrets.token_hex(32))
            print(json.dumps(receipt), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
