"""The HTTP edge: the runwire.v1 services over Connect (JSON or binary) and gRPC-Web."""
