"""The `runwire` command line.

Exit codes: 0 success; 1 the server refused the request (not found, invalid, ...), or the run
a command waited on ended failed, crashed or cancelled; 2 bad usage or settings (a bad option,
a server setting the server cannot start with, TLS settings that do not fit the server's); 3
the server could not be reached; 4 a wait timed out; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from runwire.cli import (  # noqa: F401  (each module adds its commands)
    config,
    deployments,
    flow_runs,
    flows,
    limits,
    run_logs,
    run_watch,
    task_runs,
)
from runwire.cli._app import app
from runwire.cli._installed import add_installed_commands

add_installed_commands(app)

__all__ = ["app"]
