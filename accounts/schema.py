"""The OpenAPI schema's word for API key authentication: HTTP bearer, so that Swagger UI's
Authorize button takes a key, or the X-API-Key header."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """A key as a bearer token, or in its own header: either, so that a generated client
    can send it the second way too."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = ["ApiKey", "ApiKeyHeader"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        made = "`python manage.py apikey create --account NAME` makes one."
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "description": f"An API key: `Authorization: Bearer <key>`. {made}",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": f"The same API key in its own header: `X-API-Key: <key>`. {made}",
            },
        ]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[str]]]:
        return [{"ApiKey": []}, {"ApiKeyHeader": []}]


class SessionScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.AccountSessionAuthentication"
    name = "Session"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "A person logged in to the web page (unsafe methods also need the "
            "X-CSRFToken header).",
        }
