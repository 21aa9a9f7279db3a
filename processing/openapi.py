"""What the API schema says of every operation that its views' own declarations do not:
the refusals that come before a view (the web server's, the parsers', the database's) and
the headers that answers carry, so that a client generated from it expects them."""

from typing import Any

from drf_spectacular.utils import OpenApiResponse, OpenApiWebhook, extend_schema

from processing.serializers import RequestFinishedEventSerializer, TestEventSerializer

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


# --- What the service POSTs to receivers (OpenAPI 3.1's webhooks; README: Webhook) -------


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


# drf-spectacular makes a webhook's body and answers from its extend_schema, not its
# parameters: webhook_headers_documented adds these to each.
SIGNED_HEADERS = [
    _header(
        "webhook-id",
        "The event's id (`msg_…`): the same on every attempt and resend of one event. Keep "
        "the ids you have handled and ignore an event whose id is among them.",
    ),
    _header(
        "webhook-timestamp",
        "Seconds since the epoch when this attempt was sent (each attempt gets a fresh "
        "one). Refuse an event whose timestamp is more than 5 minutes from your clock: a "
        "request captured on the way cannot then be replayed later.",
    ),
    _header(
        "webhook-signature",
        "`v1,` + base64 HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>.<raw body>` under "
        "the account's webhook secret (`whsec_` + base64: the key is what the base64 "
        "decodes to). During a secret's rotation, one signature per secret, separated by a "
        "space: accept the event if any verifies (Standard Webhooks).",
    ),
]
RECEIVER_ANSWERS = {
    "2XX": OpenApiResponse(description="Delivered: any 2xx, its body ignored."),
    "default": OpenApiResponse(
        description="Any other answer (a 3xx too: redirects are not followed), a timeout "
        "or a connection error is an attempt that failed, tried again after the waits in "
        "WEBHOOK_RETRY_SCHEDULE."
    ),
}

TEST_ANSWERS = {
    "2XX": OpenApiResponse(description="Delivered: any 2xx, its body ignored."),
    "default": OpenApiResponse(
        description="Any other answer, a timeout or a connection error is told to whoever "
        "sent the test event; nothing is retried."
    ),
}

REQUEST_FINISHED = OpenApiWebhook(
    name="requestFinished",
    decorator=extend_schema(
        summary="A request finished",
        description="POSTed to the upload's `webhook_url` (or WEBHOOK_URL) once the request "
        "has finished (completed, completed_with_errors, cancelled or failed), and again "
        "after each retry's finish, as a new event with a new `webhook-id`.",
        request=RequestFinishedEventSerializer,
        responses=RECEIVER_ANSWERS,
    ),
)
TEST_EVENT = OpenApiWebhook(
    name="testEvent",
    decorator=extend_schema(
        summary="A test event",
        description="Sent once by POST /api/webhook-test/ (or the account page), signed as "
        "every event is, and never retried: check a receiver's signature code against it. "
        "Only a test event has a `type`.",
        request=TestEventSerializer,
        responses=TEST_ANSWERS,
    ),
)


def webhook_headers_documented(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular's postprocessing hook (SPECTACULAR_SETTINGS): the headers every event
    is signed with, on each webhook."""
    for item in result.get("webhooks", {}).values():
        for operation in item.values():
            operation["parameters"] = SIGNED_HEADERS
    return result
