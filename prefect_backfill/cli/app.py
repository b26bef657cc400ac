"""The ``backfill`` Typer app and what every command shares: consoles, the global options, the
common option types. Commands register on :data:`app` from their own modules."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from prefect_backfill.errors import EXIT_CODES

app = typer.Typer(
    name="backfill",
    help="Reprocess date-partitioned Delta tables partition by partition, resumably, with Prefect.",
    # Not no_args_is_help: typer prints the whole help *before* raising that error. `backfill` alone is
    # a one-line usage error ("no command given") like every other.
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True, highlight=False)
_options: dict[str, bool] = {"verbose": False, "interrupt_reported": False, "terminated": False, "json": False}


@app.callback()
def _global_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="On an error, print the full traceback (before the command).")
    ] = False,
) -> None:
    _options["verbose"] = verbose


Start = Annotated[
    str | None, typer.Option("--start", help="First partition, inclusive (YYYY-MM-DD; 2024-01-03T05 hourly; 2024-01).")
]
End = Annotated[str | None, typer.Option("--end", help="Last partition, inclusive.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _keys(text: str | None) -> tuple[str, ...]:
    """Comma-separated keys, blanks dropped."""
    return tuple(k.strip() for k in (text or "").split(",") if k.strip())


def _exit_codes_help() -> str:
    return "\n".join(["Exit codes:", *(f"{code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())])


def _say(message: str, style: str | None = None) -> None:
    """One line on stdout, printed as is (no Rich markup: commands and keys may hold brackets)."""
    console.print(Text(message, style=style or ""), soft_wrap=True, highlight=False)
