"""Where the client looks for its connection settings: arguments, then RUNWIRE_API_*
variables; addresses as host:port or as grpc://, grpcs://, http:// and https:// URLs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runwire import Client
from runwire.connection import ConnectionSettings, split_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:50051", ("127.0.0.1:50051", None)),
        ("grpc://127.0.0.1:50051", ("127.0.0.1:50051", False)),
        ("http://runwire.internal:8080", ("runwire.internal:8080", False)),
        ("GRPCS://runwire.example.com", ("runwire.example.com:443", True)),
        ("https://runwire.example.com:8443", ("runwire.example.com:8443", True)),
        ("https://[::1]", ("[::1]:443", True)),
    ],
)
def test_addresses_and_urls(text: str, expected: tuple[str, bool | None]):
    assert split_address(text) == expected


@pytest.mark.parametrize("text", ["ftp://host:1", "http://host:1/path", "grpc://"])
def test_urls_that_name_no_grpc_server_are_refused(text: str):
    with pytest.raises(ValueError, match="address"):
        split_address(text)


def test_a_url_says_whether_to_use_tls_unless_told_otherwise():
    assert ConnectionSettings.resolve({}, address="grpcs://h").uses_tls
    assert not ConnectionSettings.resolve({}, address="grpcs://h", tls=False).uses_tls
    from_env = ConnectionSettings.resolve({"RUNWIRE_API_URL": "https://h:9"})
    assert from_env.address == "h:9" and from_env.uses_tls


def test_a_token_file_is_read_and_an_explicit_token_setting_hides_the_variables(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    env = {"RUNWIRE_API_TOKEN": "from-env"}
    assert ConnectionSettings.resolve(env).token == "from-env"
    assert ConnectionSettings.resolve(env, token_file=str(token_file)).token == "from-file"
    file_env = {"RUNWIRE_API_TOKEN_FILE": str(token_file)}
    assert ConnectionSettings.resolve(file_env).token == "from-file"
    assert ConnectionSettings.resolve(file_env, token="given").token == "given"
    with pytest.raises(ValueError, match="token file"):
        ConnectionSettings.resolve({}, token_file=str(tmp_path / "missing"))


async def test_the_client_takes_a_url(server):
    address = f"127.0.0.1:{server.port}"

    def call() -> str:
        # A blocking client, off the event loop that serves it.
        with Client(f"grpc://{address}") as client:
            client.wait_until_ready(timeout=5)
            list(client.list_flows())
            return client.address

    assert await asyncio.to_thread(call) == address
