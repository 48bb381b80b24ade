"""The ``vitalops`` command: a Typer app, one module per command group.

Exit codes: 0 ok, 1 a check failed, 2 bad input or usage. Errors print in plain words (or as
JSON with ``--json``), never as a traceback, and never with patient data.
"""

from __future__ import annotations

import logging
import sys

import typer

from vitalops.cli import (
    alerts_cmd,
    audit_cmd,
    cds_cmd,
    dataset_cmd,
    deid_cmd,
    demo_cmd,
    deploy_cmd,
    ehr_cmd,
    ingest_cmd,
    init_cmd,
    models_cmd,
    monitor_cmd,
    online_cmd,
    pccp_cmd,
    predict_cmd,
    predictions_cmd,
    quality_cmd,
    review_cmd,
    scenarios_cmd,
    score_cmd,
    serve_cmd,
    sites_cmd,
    synth_cmd,
    train_cmd,
    users_cmd,
)
from vitalops.cli.context import close_databases
from vitalops.cli.output import err_console, print_json
from vitalops.core.logging import configure_logging
from vitalops.errors import VitalOpsError

COMMAND_MODULES = (
    init_cmd,
    demo_cmd,
    serve_cmd,
    synth_cmd,
    ingest_cmd,
    deid_cmd,
    quality_cmd,
    dataset_cmd,
    train_cmd,
    models_cmd,
    pccp_cmd,
    deploy_cmd,
    audit_cmd,
    users_cmd,
    sites_cmd,
    predict_cmd,
    score_cmd,
    predictions_cmd,
    online_cmd,
    ehr_cmd,
    cds_cmd,
    review_cmd,
    monitor_cmd,
    alerts_cmd,
    scenarios_cmd,
)

log = logging.getLogger("vitalops.cli")


def build_app() -> typer.Typer:
    """The command tree, assembled from every command module's ``register``."""
    app = typer.Typer(
        name="vitalops",
        help="VitalOps: clinical AI from the EHR's data to the clinician's screen, governed end to end.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    for module in COMMAND_MODULES:
        module.register(app)
    return app


def run() -> None:
    """Console-script entry point: run the app and map VitalOps errors to exit codes."""
    configure_logging()
    app = build_app()
    wants_json = "--json" in sys.argv
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(code) comes back as its return value
        if isinstance(code, int) and not isinstance(code, bool) and code:
            sys.exit(code)
    except VitalOpsError as exc:
        if wants_json:
            print_json({"error": exc.to_dict()})
        else:
            err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(2)
    except typer.exceptions.TyperException as exc:
        # Usage errors (a missing option, a bad value, an unknown command): the parser's own words.
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        sys.exit(2)
    except Exception as exc:  # the last line of defence: no traceback text, which may hold PHI
        log.exception("unexpected error")
        err_console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}; see the log for details")
        sys.exit(1)
    finally:
        close_databases()


if __name__ == "__main__":
    run()
