"""``vitalops serve``: the API, CDS Hooks and the dashboard."""

from __future__ import annotations

import errno
import socket
from typing import Annotated

import typer

from vitalops.cli.context import cli_settings, open_database
from vitalops.cli.output import JsonOption, emit
from vitalops.errors import InvalidInput


def ensure_port_free(host: str, port: int) -> None:
    """Raise InvalidInput (exit 2) naming the port when something already listens on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InvalidInput(f"port {port} on {host} is already in use; choose another with --port",
                                   details={"port": port, "host": host}) from None
            raise InvalidInput(f"cannot listen on {host}:{port} ({errno.errorcode.get(exc.errno or 0, 'error')})",
                               details={"port": port, "host": host}) from None


def serve_forever(host: str, port: int, workers: int = 1) -> None:
    """Run the server in the foreground until interrupted (its own loggers redacted like ours)."""
    import uvicorn

    from vitalops.core.logging import server_log_config

    settings = cli_settings()
    uvicorn.run("vitalops.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False,
                log_config=server_log_config("WARNING", json_lines=settings.log_json))


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
        workers: Annotated[int, typer.Option("--workers", min=1, max=64)] = 1,
        as_json: JsonOption = False,
    ) -> None:
        """Serve the API (OpenAPI at /docs) until interrupted."""
        open_database(cli_settings()).dispose()  # fail fast, in plain words, if the database is unusable
        ensure_port_free(host, port)  # before saying where it serves
        emit({"url": f"http://{host}:{port}", "docs": f"http://{host}:{port}/docs", "workers": workers}, as_json)
        serve_forever(host, port, workers)
