"""A job-callback receiver for trying kscore's webhooks: prints each delivery and whether
its Standard Webhooks signature holds.

    python examples/webhook_receiver.py PORT WEBHOOK_SECRET
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

# Deliveries older than this are refused, as Standard Webhooks advise (replayed messages).
TOLERANCE_S = 300


def verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether ``body`` carries a valid signature by ``secret`` and a recent timestamp."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    return any(
        hmac.compare_digest(sig.split(",", 1)[-1], expected)
        for sig in headers["webhook-signature"].split()
    )


def main() -> None:
    port, secret = int(sys.argv[1]), sys.argv[2]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            ok = verified(secret, headers, body)
            job = json.loads(body)
            print(
                f"job {job['id']} {job['status']} signature={'valid' if ok else 'INVALID'}",
                flush=True,
            )
            self.send_response(204 if ok else 400)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
