"""One JSON object per log line, so CloudWatch Logs Insights can query every field.

The functions print to stdout, which the Lambda runtime ships to the function's log group.
A line carries ``level``, ``message``, the request id when known, and the caller's fields.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class JsonLogger:
    """Writes structured log lines; ``request_id`` is set per invocation by the handler."""

    def __init__(self, function: str, stream: TextIO | None = None) -> None:
        self.function = function
        self.request_id: str | None = None
        self._stream = stream

    def info(self, message: str, **fields: Any) -> None:
        self._write("INFO", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._write("WARNING", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._write("ERROR", message, fields)

    def _write(self, level: str, message: str, fields: dict[str, Any]) -> None:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "level": level,
            "function": self.function,
            "message": message,
        }
        if self.request_id:
            line["request_id"] = self.request_id
        line.update(fields)
        stream = self._stream or sys.stdout
        stream.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")
        stream.flush()
