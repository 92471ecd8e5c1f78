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
- `POST /api/v1/auth/register`: generated emails repeat (`"0@0"`), so after the first sign-up
  every later case is, correctly, 409 EMAIL_TAKEN. A short email that fits the documented
  pattern is made unique here, so a valid body creates an account.
- `POST /api/v1/auth/login`: a generated email has no account, so every case would be 401 (and
  then 429). A case with a short email that fits the pattern signs in to an account made here
  once, with its password, so the success path is exercised too; other cases are sent as
  generated.
- `PATCH /api/v1/admin/products/{id}`: a generated `maxPerCustomer` or `maxPerOrder` of 1 on
  product 1 would make every later order of it (the seeded product the order cases use) 409
  PURCHASE_LIMIT_REACHED or 400. A case aimed at product 1 is pointed at product 10 instead.

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


EMAIL_PATTERN = re.compile(r"^[!-?A-~]+@[!-?A-~]+$")
SIGN_IN = {"email": f"fuzz-{uuid.uuid4()}@example.com", "password": "fuzz password"}
_signed_up = False


def _sign_in_account() -> dict:
    """The account login cases are pointed at, registered on first use."""
    global _signed_up
    if not _signed_up:
        request = urllib.request.Request(
            f"{BASE}/api/v1/auth/register",
            data=json.dumps({**SIGN_IN, "name": "fuzz"}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5):
                _signed_up = True
        except Exception:  # the case then fails to sign in, as generated data would
            pass
    return SIGN_IN


def _short_email(body) -> bool:
    if not isinstance(body, dict):
        return False
    email = body.get("email")
    return isinstance(email, str) and len(email) < SHORT_KEY and bool(EMAIL_PATTERN.match(email))


@schemathesis.hook
def before_call(context, case, **kwargs):
    operation = case.operation
    if not BASE:
        return
    if operation.method.upper() == "PATCH":
        if operation.path == "/api/v1/admin/products/{id}":
            if str((case.path_parameters or {}).get("id")) == "1":
                case.path_parameters["id"] = 10
        return
    if operation.method.upper() != "POST":
        return
    if operation.path == "/api/v1/orders":
        headers = case.headers or {}
        key = headers.get("Idempotency-Key")
        if isinstance(key, str) and len(key) < SHORT_KEY and KEY_PATTERN.match(key):
            headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"
            case.headers = headers
    elif operation.path == "/api/v1/auth/register":
        if _short_email(case.body):
            case.body["email"] = f"fuzz-{uuid.uuid4()}-{case.body['email']}"
    elif operation.path == "/api/v1/auth/login":
        if _short_email(case.body) and isinstance(case.body.get("password"), str):
            case.body.update(_sign_in_account())
    elif operation.path == "/api/v1/orders/{orderId}/cancel":
        if str((case.path_parameters or {}).get("orderId")) == "1":
            fresh = _fresh_pending_order()
            if fresh is not None:
                case.path_parameters["orderId"] = fresh

