from __future__ import annotations

import logging

import orjson

from homeserver.config import LoggingConfig
from homeserver.logging_setup import JsonFormatter, setup_logging


def test_json_formatter_keeps_extra_fields():
    rec = logging.LogRecord("homeserver.access", logging.INFO, "f", 1, "%s %d", ("GET", 200), None)
    rec.request_id = "abc123"
    rec.status = 200
    out = orjson.loads(JsonFormatter().format(rec))
    assert out["msg"] == "GET 200"
    assert out["level"] == "INFO"
    assert out["request_id"] == "abc123"
    assert out["status"] == 200
    assert out["ts"].endswith("Z")


def test_setup_logging_sets_level_and_format():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging(LoggingConfig(level="WARNING", format="json"))
        assert root.level == logging.WARNING
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert logging.getLogger("hypercorn.access").disabled
    finally:
        root.handlers[:], lvl = saved[0], saved[1]
        root.setLevel(lvl)
