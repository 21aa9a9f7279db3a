"""How the API reads requests: JSON bodies as strictly as forms are (a field given twice
is named, since the last one would otherwise win without a word; a body nested deeper
than Python's parser can follow is a parse error, not a server error), and the format a
client asks for."""

import json
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.http import Http404
from rest_framework import parsers
from rest_framework.exceptions import NotAcceptable, ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.utils.json import strict_constant


class JsonObject(dict[str, Any]):
    """A JSON object, and the names it gave more than once, with how often."""

    repeated: dict[str, int]


def _object(pairs: list[tuple[str, Any]]) -> JsonObject:
    found = JsonObject()
    found.repeated = {}
    for name, value in pairs:
        if name in found:
            found.repeated[name] = found.repeated.get(name, 1) + 1
        found[name] = value
    return found


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            return json.loads(text, object_pairs_hook=_object, parse_constant=strict_constant)
        except RecursionError:
            # '[' * 1000 took DRF's parser past the interpreter's recursion limit: a 500.
            raise ParseError("JSON parse error - nested too deeply.") from None
        except ValueError as error:  # UnicodeDecodeError too
            raise ParseError(f"JSON parse error - {error}") from None


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's, but a ?format= the route does not offer is 406 not_acceptable, as the same
    ask in an Accept header is: DRF answered 404, which a client reads as "no such
    request" for one that exists."""

    def select_renderer(
        self, request: Any, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        try:
            chosen: tuple[BaseRenderer, str] = super().select_renderer(
                request, renderers, format_suffix
            )
            return chosen
        except Http404:
            asked = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
            offered = ", ".join(sorted({renderer.format for renderer in renderers}))
            message = f"No format '{asked}' here; this route answers {offered}."
            raise NotAcceptable(message) from None
