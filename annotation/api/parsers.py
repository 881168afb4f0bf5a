"""JSON Lines request bodies (application/x-ndjson): one JSON value per line, parsed into a list."""

from __future__ import annotations

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class JSONLinesParser(BaseParser):
    media_type = "application/x-ndjson"

    # A list, where DRF's stubs expect a mapping: request.data is whatever the parser returns.
    def parse(  # type: ignore[override]
        self, stream: Any, media_type: str | None = None, parser_context: Any = None
    ) -> list[Any]:
        items = []
        for number, raw in enumerate(stream, start=1):
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ParseError(f"Line {number} is not valid JSON: {exc.msg}.") from None
        return items
