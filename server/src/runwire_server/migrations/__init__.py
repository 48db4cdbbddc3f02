"""Schema migrations (Alembic), shipped with the server and run through `runwire_server.schema`."""
