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
LOCATION = {
    "Location": {
        "description": "The status URL of the request made (the body's `status_url`).",
        "schema": {"type": "string", "format": "uri"},
    }
}
ETAG = {
    "ETag": {
        "description": "A weak tag of the answer's body, which changes when anything in "
        "it does: send it back as If-None-Match to be answered 304 while it has not.",
        "schema": {"type": "string"},
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
            headers_taken = {
                parameter.get("name")
                for parameter in operation.get("parameters", [])
                if parameter.get("in") == "header"
            }
            # What takes an Idempotency-Key makes a request: an upload, a re-run.
            if "Idempotency-Key" in headers_taken and "202" in responses:
                responses["202"] = {**responses["202"], "headers": REPLAYED | LOCATION}
            if "If-None-Match" in headers_taken:
                for status in ("200", "304"):
                    responses[status] = {**responses[status], "headers": ETAG}
            if path.endswith("/output.csv") and "200" in responses:
                responses["200"] = {
                    **responses["200"],
                    "headers": responses["200"].get("headers", {}) | ATTACHMENT,
                }
    return result
