"""The command line answers at once and speaks plainly: no heavy import at start-up, settings typos
named with their allowed values, a busy port named before anything claims to serve, tables that
never split a number and never print a Python list."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable

from rich.console import Console

from vitalops.cli.output import rows_table

HEAVY = ("pyarrow", "pandas", "scipy", "sklearn", "duckdb", "alembic", "lightgbm")


def test_importing_the_command_line_loads_nothing_heavy() -> None:
    code = ("import sys, vitalops.cli.main; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == ""
    listed = subprocess.run([sys.executable, "-m", "vitalops.cli.main", "--help"], capture_output=True, text=True,
                            check=True, timeout=60)
    assert "audit" in listed.stdout and "serve" in listed.stdout


def test_a_settings_typo_names_the_setting_and_the_allowed_values(cli: Callable, monkeypatch) -> None:
    monkeypatch.setenv("VITALOPS_ENVIRONMENT", "prod")
    result = cli("audit", "verify")
    assert result.exit_code == 2
    assert "VITALOPS_ENVIRONMENT must be one of 'development', 'test' or 'production'" in result.stderr
    assert "prod'" not in result.stderr.replace("'production'", "")


def test_a_busy_port_is_named_before_serving_is_claimed(cli: Callable) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = cli("serve", "--port", str(port))
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "http://" not in result.stdout


def test_tables_never_split_numbers_or_print_python_lists() -> None:
    rows = [{"name": "deterioration-early-warning-model", "count": 1234567890123, "champions": ["a:v1", "b:v2"]}]
    console = Console(width=40, record=True, color_system=None)
    console.print(rows_table(rows, ["name", "count", "champions"]))
    text = console.export_text()
    assert "1234567890123" in text
    assert "'a:v1'" not in text and "[" not in text and "a:v1," in text
