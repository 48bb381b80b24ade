"""``vitalops serve``: the API, CDS Hooks and the dashboard."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from vitalops.cli.context import cli_settings, open_database
from vitalops.cli.output import JsonOption, emit


def serve_forever(host: str, port: int, workers: int = 1) -> None:
    """Run the server in the foreground until interrupted."""
    uvicorn.run("vitalops.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)


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
        emit({"url": f"http://{host}:{port}", "docs": f"http://{host}:{port}/docs", "workers": workers}, as_json)
        serve_forever(host, port, workers)
