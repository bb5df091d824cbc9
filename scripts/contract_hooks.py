"""Schemathesis hooks for scripts/contract (loaded through SCHEMATHESIS_HOOKS).

Each hook says why it exists. Nothing here hides a failure of the server.
"""

import json
import os

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
    # `POST /logout` revokes the token it carries: it gets a throwaway token (scripts/contract
    # makes one; after the first call it is revoked and the answer a documented 401), so the run
    # keeps the administrator token. For the same reason the local token is never revoked.
    if case.path == "/api/v1/logout" and os.environ.get("CONTRACT_LOGOUT_TOKEN"):
        case.headers = dict(case.headers or {})
        case.headers["Authorization"] = "Bearer " + os.environ["CONTRACT_LOGOUT_TOKEN"]
    if case.path == "/api/v1/api-tokens/{name}" and isinstance(case.path_parameters, dict):
        if case.path_parameters.get("name") == "local-admin":
            case.path_parameters["name"] = "not-the-local-token"
    if case.path == "/api/v1/users/{name}/disable" and isinstance(case.path_parameters, dict):
        if case.path_parameters.get("name") == "admin":
            case.path_parameters["name"] = "someone"


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
