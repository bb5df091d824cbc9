"""Schemathesis hooks for scripts/contract (loaded through SCHEMATHESIS_HOOKS).

Each hook says why it exists. Nothing here hides a failure of the server, except the cases
marked "fixed on h-api", which another branch fixes; remove them once it is merged.
"""

import json
import sys

import schemathesis


@schemathesis.serializer("application/x-tar")
def tar_serializer(ctx, value):
    """Build contexts and image archives are raw tar bytes (schema: string, format binary)."""
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": str(value).encode("utf-8")}


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """`GET /gateway/table?watch=true` is a live stream that never ends by design (a table per
    change, and again every 10 s): ask for the plain table instead."""
    if case.path == "/api/v1/gateway/table" and isinstance(case.query, dict):
        if str(case.query.get("watch", "")).lower() in ("true", "1"):
            case.query["watch"] = "false"


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    """Drop the failures another branch fixes (keep every other one), saying which."""
    why = known_elsewhere(case, response)
    if why:
        print(f"[contract] dropped ({why}): {case.method} {case.formatted_path} -> "
              f"{response.status_code}", file=sys.stderr)
        return False
    return True


def known_elsewhere(case, response):
    status = response.status_code
    body = response.content or b""
    # fixed on h-api: 414 (URI too long) is answered with an empty body.
    if status == 414:
        return "fixed on h-api: 414 with an empty body"
    # fixed on h-api: a number beyond i64 (a build id) is a 500 instead of a 400.
    if case.path.startswith("/api/v1/builds/{id}") and status == 500:
        build_id = str((case.path_parameters or {}).get("id", ""))
        if build_id.isdigit() and int(build_id) > 2**63 - 1:
            return "fixed on h-api: a number beyond i64 answers 500"
    # fixed on h-api: /builds/{id} with an id that is not a number answers plain text.
    if case.path.startswith("/api/v1/builds/{id}") and not body.startswith(b"{") and status == 400:
        return "fixed on h-api: a bad build id answers plain text"
    return None


@schemathesis.check
def berth_error_shape(ctx, response, case):
    """Every answer carries `X-Request-Id`; every error answer is exactly the Berth shape
    `{code, message, request_id}` (non-empty strings, the id that of the header), as JSON.
    (The document says so too; this also holds for answers it might not describe.)"""
    request_id = response.headers.get("x-request-id")
    if isinstance(request_id, list):
        request_id = request_id[0] if request_id else None
    if not request_id:
        raise AssertionError("no X-Request-Id header")
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type") or ""
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if not content_type.startswith("application/json"):
        raise AssertionError(f"error answer with Content-Type {content_type!r}, not JSON")
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"error answer is not JSON: {e}") from None
    if not isinstance(body, dict) or sorted(body) != ["code", "message", "request_id"]:
        raise AssertionError(f"error answer is not {{code, message, request_id}}: {body!r}")
    for key in ("code", "message", "request_id"):
        if not isinstance(body[key], str) or not body[key]:
            raise AssertionError(f"error answer's {key} is not a non-empty string: {body!r}")
    if body["request_id"] != request_id:
        raise AssertionError(
            f"error answer's request_id {body['request_id']!r} is not the header's {request_id!r}"
        )
