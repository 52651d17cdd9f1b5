"""The JSON parser every endpoint uses (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES).

A request body nested deeper than MAX_JSON_DEPTH is a 400 before any view sees it. Python's
json module gives up with a RecursionError (not a ValueError, which is all DRF's parser turns
into a 400) at about a thousand levels; and a body just below that limit still parses, only
to blow up later in code that walks it recursively, such as the canonical JSON of a params
hash. No request of this API needs more than a handful of levels.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 64

TOO_DEEP = f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels."


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` holds objects or arrays nested more than `limit` deep (`{}` and `[]`
    are one level). Walks with a stack of its own, so it cannot overflow Python's."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser, which also refuses bodies nested deeper than MAX_JSON_DEPTH."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(TOO_DEEP) from exc
        if isinstance(data, dict | list) and json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(TOO_DEEP)
        return data
