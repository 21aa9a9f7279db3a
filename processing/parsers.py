"""JSON bodies read as strictly as forms are: a field given twice is named (the last one
would otherwise win without a word), and a body nested deeper than Python's parser can
follow is a parse error, not a server error."""

import json
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
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
