"""schemathesis hooks for scripts/fuzz-api: give generated data what it cannot make itself.

Two operations depend on state that random data almost never hits:

- `POST /api/v1/orders` takes an `Idempotency-Key`; generated keys are short and repeat
  (`"0"`, `"A"`), so after the first order every later case with another body is, correctly,
  422 IDEMPOTENCY_KEY_REUSED. A short key that fits the documented pattern is made unique here,
  so a valid body reaches the order logic. Long keys, and keys that break the pattern (the
  negative cases), are sent as generated.
- `POST /api/v1/orders/{orderId}/cancel` needs a PENDING order of the caller; the seeded order 1
  is paid (it backs the payment replay). A case aimed at order 1 is pointed at a fresh PENDING
  order made here, so the cancel itself is exercised; other ids are sent as generated (404s and
  refused states).

Needs FUZZ_BASE (the server's base URL) and FUZZ_TOKEN (the bearer token the run uses).
"""

import json
import os
import re
import urllib.request
import uuid

import schemathesis

BASE = os.environ.get("FUZZ_BASE", "")
TOKEN = os.environ.get("FUZZ_TOKEN", "")
KEY_PATTERN = re.compile(r"^[!#-~]([ -~]*[!-~])?$")
SHORT_KEY = 16


def _fresh_pending_order() -> int | None:
    request = urllib.request.Request(
        f"{BASE}/api/v1/orders",
        data=json.dumps({"items": [{"productId": 1, "quantity": 1}]}).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"fuzz-cancel-{uuid.uuid4()}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(json.load(response)["data"]["orderId"])
    except Exception:  # the case then runs as generated
        return None


@schemathesis.hook
def before_call(context, case, **kwargs):
    operation = case.operation
    if operation.method.upper() != "POST" or not BASE:
        return
    if operation.path == "/api/v1/orders":
        headers = case.headers or {}
        key = headers.get("Idempotency-Key")
        if isinstance(key, str) and len(key) < SHORT_KEY and KEY_PATTERN.match(key):
            headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"
            case.headers = headers
    elif operation.path == "/api/v1/orders/{orderId}/cancel":
        if str((case.path_parameters or {}).get("orderId")) == "1":
            fresh = _fresh_pending_order()
            if fresh is not None:
                case.path_parameters["orderId"] = fresh

