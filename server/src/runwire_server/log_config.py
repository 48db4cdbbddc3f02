"""Structured logging: key/value events, rendered for a terminal or as JSON lines."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str, fmt: str) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Every call logs at debug level; an uncached logger is rebuilt at each use.
        cache_logger_on_first_use=True,
    )
    # What the libraries log through the standard library (uvicorn, asyncio, gRPC's Python
    # parts) comes out as the same events, so that a JSON log stays one JSON object a line.
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
    )
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "runwire", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.runwire = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(formatter)
    # Libraries say at INFO what a server's own log already says (uvicorn: "Shutting down").
    root.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
