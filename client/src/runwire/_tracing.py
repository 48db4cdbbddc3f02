"""The caller's trace context on every call (W3C `traceparent`), for programs that trace with
OpenTelemetry: a Runwire server with tracing on continues their traces.

The library does not depend on OpenTelemetry. A program that traces has imported it before
any span can be current, so until something has, calls pay one dictionary lookup and
OpenTelemetry is never imported on their behalf.
"""

from __future__ import annotations

import sys

Metadata = tuple[tuple[str, str], ...]


def outgoing(metadata: Metadata) -> Metadata:
    """`metadata` and the current trace context, as the program's propagators write it
    (tracecontext and baggage unless OTEL_PROPAGATORS says otherwise)."""
    if "opentelemetry.context" not in sys.modules:
        return metadata
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:  # no span is current
        return metadata
    # gRPC takes metadata names in lower case only.
    return (*metadata, *((name.lower(), value) for name, value in carrier.items()))
