"""Runwire client: the generated runwire.v1 stubs and the `runwire` command line."""

__all__: list[str] = []
