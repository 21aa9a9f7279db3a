"""What the API schema says of every operation that its views' own declarations do not:
the refusals that come before a view (the web server's, the parsers', the database's) and
the headers that answers carry, so that a client generated from it expects them."""

from typing import Any

ERROR = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    "description": "",
}
# Any operation with a body: none without a length, none past the largest upload (the web
# server's event loop, config/web_worker.py), none of another media type (the parsers').
BODY_REFUSALS = ("411", "413", "415")
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before sending the call again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}
HEADERS = {
    "401": {
        "WWW-Authenticate": {
            "description": "How to authenticate: `Bearer`.",
            "schema": {"type": "string"},
        }
    },
    "429": RETRY_AFTER,
    "503": RETRY_AFTER,
}
REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` where the call was sent again with its Idempotency-Key: the "
        "request it made the first time, not a new one.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
ATTACHMENT = {
    "Content-Disposition": {
        "description": '`attachment; filename="<request id>-output.csv"`.',
        "schema": {"type": "string"},
    }
}


def refusals_documented(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular's postprocessing hook (SPECTACULAR_SETTINGS)."""
    for path, item in result.get("paths", {}).items():
        for operation in item.values():
            responses = operation["responses"]
            if "requestBody" in operation:
                for status in BODY_REFUSALS:
                    responses.setdefault(status, dict(ERROR))
            responses.setdefault("503", dict(ERROR))  # the database away, the server busy
            for status, headers in HEADERS.items():
                if status in responses:
                    responses[status] = {**responses[status], "headers": headers}
            keyed = any(
                parameter.get("in") == "header" and parameter.get("name") == "Idempotency-Key"
                for parameter in operation.get("parameters", [])
            )
            if keyed and "202" in responses:
                responses["202"] = {**responses["202"], "headers": REPLAYED}
            if path.endswith("/output.csv") and "200" in responses:
                responses["200"] = {**responses["200"], "headers": ATTACHMENT}
    return result
