"""A client whose TLS settings do not fit the server's fails at once and says why; a server that
is down, or comes up late, is still waited for.

The servers run in this process, so the synchronous client runs in a worker thread while the
event loop serves; the command line runs as a user runs it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import runwire
from runwire import AsyncClient, Client, DeadlineExceeded, TlsMismatch, Unavailable
from runwire_server.server import serving
from tests.certs import Certificates, make_certificates
from tests.conftest import RUNWIRE_CLI, free_port, make_settings
from tests.helpers import unique

# The bound on how long a TLS mismatch may take to surface; the calls' own deadlines are 30 s.
PROMPT = 2.0
# The command line waits this long for a connection before it says it cannot reach a server.
CLI_CONNECT_WAIT = 3.0


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@dataclass(frozen=True)
class Servers:
    plain: int
    tls: int
    mutual: int
    wrong_address: str  # a TLS server on an address its certificate does not name


@pytest.fixture(scope="module")
async def servers(
    certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Servers]:
    directory = tmp_path_factory.mktemp("servers")
    tls = {
        "tls_cert_file": str(certificates.server.cert),
        "tls_key_file": str(certificates.server.key),
    }
    async with (
        serving(make_settings(directory / "plain.db")) as plain,
        serving(make_settings(directory / "tls.db", **tls)) as secure,
        serving(
            make_settings(directory / "mutual.db", tls_client_ca_file=str(certificates.ca), **tls)
        ) as mutual,
        # The certificate names 127.0.0.1 and localhost; 127.0.0.2 is loopback too.
        serving(
            make_settings(directory / "elsewhere.db", listen_address="127.0.0.2:0", **tls)
        ) as elsewhere,
    ):
        yield Servers(plain.port, secure.port, mutual.port, f"127.0.0.2:{elsewhere.port}")


@dataclass(frozen=True)
class Case:
    """A client setting that does not fit a server, and what the client says about it."""

    server: str  # a field of Servers
    options: Callable[[Certificates], dict[str, str | bool]]  # Client(...) keyword arguments
    reason: str
    says: tuple[str, ...]  # in the library's message
    cli_says: tuple[str, ...]  # in the command line's line

    def address(self, servers: Servers) -> str:
        where = getattr(servers, self.server)
        return where if isinstance(where, str) else f"127.0.0.1:{where}"

    def cli_options(self, certificates: Certificates) -> list[str]:
        flags: list[str] = []
        for name, value in self.options(certificates).items():
            flag = "--" + name.replace("_", "-")
            flags += [flag] if value is True else [flag, str(value)]
        return flags


def _client_pair(pair: Any) -> dict[str, str | bool]:
    return {"cert_file": str(pair.cert), "key_file": str(pair.key)}


CASES = {
    "plain-text client, TLS server": Case(
        "tls",
        lambda c: {},
        TlsMismatch.SERVER_REQUIRES_TLS,
        ("speaks TLS", "plain text", "tls=True", "ca_file="),
        ("speaks TLS", "--ca-file", "--tls"),
    ),
    "plain-text client, mutual-TLS server": Case(
        "mutual",
        lambda c: {},
        TlsMismatch.SERVER_REQUIRES_TLS,
        ("speaks TLS", "requires a client certificate", "cert_file="),
        ("speaks TLS", "--ca-file", "--cert-file", "--key-file"),
    ),
    "TLS client, plain-text server": Case(
        "plain",
        lambda c: {"ca_file": str(c.ca)},
        TlsMismatch.SERVER_IS_PLAINTEXT,
        ("speaks plain text", "connect without TLS"),
        ("speaks plain text", "drop --tls, --ca-file"),
    ),
    "untrusted server certificate": Case(
        "tls",
        lambda c: {"tls": True},  # the system's CAs, which did not sign the test CA
        TlsMismatch.SERVER_CERTIFICATE_UNTRUSTED,
        ("does not trust", "unable to get local issuer certificate", "ca_file="),
        ("does not trust", "unable to get local issuer certificate", "--ca-file"),
    ),
    "certificate for another address": Case(
        "wrong_address",
        lambda c: {"ca_file": str(c.ca)},
        TlsMismatch.SERVER_CERTIFICATE_UNTRUSTED,
        ("IP address mismatch", "a name or address the certificate holds"),
        ("IP address mismatch", "--address its certificate names"),
    ),
    "no client certificate for a mutual-TLS server": Case(
        "mutual",
        lambda c: {"ca_file": str(c.ca)},
        TlsMismatch.CLIENT_CERTIFICATE_REQUIRED,
        ("requires a client certificate", "cert_file=", "key_file="),
        ("requires a client certificate", "--cert-file and --key-file"),
    ),
    "client certificate from a CA the server does not trust": Case(
        "mutual",
        lambda c: {"ca_file": str(c.ca), **_client_pair(c.stranger)},
        TlsMismatch.CLIENT_CERTIFICATE_REJECTED,
        ("did not accept this client's certificate", "stranger.crt"),
        ("did not accept", "a --cert-file signed by a CA the server trusts"),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_a_tls_mismatch_fails_at_once_and_says_why(servers, certificates, case: Case):
    address = case.address(servers)
    options = case.options(certificates)

    def attempt(call: Callable[[Client], object]) -> tuple[TlsMismatch, float]:
        with Client(address, timeout=30, **options) as client:
            started = time.monotonic()
            with pytest.raises(TlsMismatch) as caught:
                call(client)
            return caught.value, time.monotonic() - started

    for call in (
        lambda client: client.create_flow(unique("tls")),
        lambda client: next(client.list_flows()),
        lambda client: client.wait_until_ready(timeout=10),
    ):
        error, took = await asyncio.to_thread(attempt, call)
        assert took < PROMPT, f"{took:.2f}s"
        assert error.reason == case.reason
        assert error.address == address and error.metadata["address"] == address
        for words in case.says:
            assert words in str(error)
        # Not a transient failure: nothing that retries on Unavailable retries this.
        assert not isinstance(error, Unavailable)
        assert isinstance(error, runwire.RunwireError)

    async with AsyncClient(address, timeout=30, **options) as client:
        started = time.monotonic()
        with pytest.raises(TlsMismatch) as caught:
            await client.create_flow(unique("tls"))
        assert time.monotonic() - started < PROMPT
        assert caught.value.reason == case.reason


def run_cli(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [str(RUNWIRE_CLI), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_the_cli_names_a_tls_mismatch_in_one_line(servers, certificates, case: Case):
    address = case.address(servers)
    # Starting the process takes most of a command's time (and varies with the machine's
    # load): the same command against a server it fits is the yardstick.
    fits, baseline = await asyncio.to_thread(
        run_cli, "flow-run", "ls", "--address", f"127.0.0.1:{servers.plain}"
    )
    assert fits.returncode == 0, fits.stderr
    result, took = await asyncio.to_thread(
        run_cli, *case.cli_options(certificates), "flow-run", "ls", "--address", address
    )
    assert result.returncode == 2, result.stderr
    # One line: no gRPC "Handshake failed" log line, no traceback, no wrapping.
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("TLS settings do not fit the server's: ")
    assert address in result.stderr
    for words in case.cli_says:
        assert words in result.stderr
    # It does not wait for a connection: without the diagnosis it would wait 3 s and more.
    assert took < baseline + PROMPT, f"{took:.2f}s, {baseline:.2f}s for a command that fits"
    assert result.stdout == ""


async def test_the_cli_takes_tls_settings_from_the_environment(servers, certificates):
    result, _ = await asyncio.to_thread(
        run_cli,
        "flow",
        "ls",
        "--address",
        f"127.0.0.1:{servers.plain}",
        env={"RUNWIRE_API_TLS": "true"},
    )
    assert result.returncode == 2
    assert "speaks plain text" in result.stderr and "RUNWIRE_API_TLS" in result.stderr


async def test_fitting_settings_still_connect(servers, certificates):
    def work() -> None:
        for address, options in (
            (f"127.0.0.1:{servers.plain}", {}),
            (f"127.0.0.1:{servers.tls}", {"ca_file": str(certificates.ca)}),
            (f"localhost:{servers.tls}", {"ca_file": str(certificates.ca)}),
            (
                f"127.0.0.1:{servers.mutual}",
                {"ca_file": str(certificates.ca), **_client_pair(certificates.client)},
            ),
        ):
            with Client(address, timeout=10, **options) as client:
                assert client.create_flow(unique("fits")).name.startswith("fits")

    await asyncio.to_thread(work)


def test_a_server_that_is_down_is_waited_for_within_the_deadline():
    address = f"127.0.0.1:{free_port()}"  # nothing listens: connection refused
    with Client(address, timeout=2, retries=0) as client:
        started = time.monotonic()
        with pytest.raises((DeadlineExceeded, Unavailable)) as caught:
            client.create_flow(unique("down"))
        took = time.monotonic() - started
    assert not isinstance(caught.value, TlsMismatch)
    assert took >= 1.5, f"gave up after {took:.2f}s, before its deadline"
    with Client(address, timeout=30) as client, pytest.raises(Unavailable) as waited:
        client.wait_until_ready(timeout=1)
    assert "no connection to" in waited.value.message


def test_the_cli_says_a_server_that_is_down_cannot_be_reached_in_one_line():
    address = f"127.0.0.1:{free_port()}"
    result, took = run_cli("flow-run", "ls", "--address", address)
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"cannot reach the Runwire server at {address}: no connection to {address} within 3s"
    ]
    assert took >= CLI_CONNECT_WAIT


async def test_a_call_made_before_the_server_is_up_waits_for_it(tmp_path: Path):
    port = free_port()
    client = Client(f"127.0.0.1:{port}", timeout=30)
    try:
        # The first call finds nothing listening (and diagnoses that: no TLS mismatch), then
        # waits for the connection like any call.
        call = asyncio.create_task(asyncio.to_thread(client.create_flow, unique("late")))
        await asyncio.sleep(1.0)
        assert not call.done()
        settings = make_settings(tmp_path / "late.db", listen_address=f"127.0.0.1:{port}")
        async with serving(settings):
            flow = await asyncio.wait_for(call, timeout=20)
            assert flow.name.startswith("late")
    finally:
        client.close()


async def test_a_server_restarted_with_tls_is_named_when_the_call_gives_up(
    tmp_path: Path, certificates
):
    """After the first connection calls go straight out; one that then finds a TLS server in
    place of the plain-text one waits its deadline, as for any restart, and says why it failed."""
    port = free_port()
    address = f"127.0.0.1:{port}"

    def settings(**extra: Any) -> Any:
        return make_settings(tmp_path / "restart.db", listen_address=address, **extra)

    with Client(address, timeout=2, retries=0) as client:
        async with serving(settings()):
            await asyncio.to_thread(client.create_flow, unique("before"))
        tls = {
            "tls_cert_file": str(certificates.server.cert),
            "tls_key_file": str(certificates.server.key),
        }
        async with serving(settings(**tls)) as running:
            assert running.port == port
            with pytest.raises(TlsMismatch) as caught:
                await asyncio.to_thread(client.create_flow, unique("after"))
    assert caught.value.reason == TlsMismatch.SERVER_REQUIRES_TLS
    assert isinstance(caught.value.__cause__, DeadlineExceeded | Unavailable)
