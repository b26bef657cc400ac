"""The process around the app: one-line errors with their exit codes (usage errors exit 2), JSON
errors under ``--json``, SIGTERM unwinding like Ctrl-C, and the ``backfill`` entry point."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

from rich.text import Text

from prefect_backfill.cli.app import _options, app, err_console
from prefect_backfill.errors import BackfillError


def _exception_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from typer's vendored click (``typer._click``, typer >= 0.29), typer itself and the
    ``click`` package, whichever are installed: typer 0.29 raises its own copies, not click's, and a
    command's own code may raise the click package's. What is raised is told apart by ``isinstance``
    against these classes, never by a class's name."""
    found: list[type[BaseException]] = []
    for module_name in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


def _param_name(param: Any) -> str:
    """``--max-concurrency`` for an option, ``PIPELINE`` for an argument."""
    opts = [o for o in getattr(param, "opts", None) or () if isinstance(o, str)]
    if getattr(param, "param_type_name", "") == "option" and opts:
        return next((o for o in opts if o.startswith("--")), opts[0])
    return str(getattr(param, "metavar", None) or getattr(param, "name", None) or "value").upper()


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _bad_value(exc: Any, param: Any) -> str:
    """What is wrong with a parameter's value, from the validation error typer raised it from."""
    message = _first_line(str(getattr(exc, "message", "") or exc)).rstrip(".")
    cause = exc.__cause__
    errors = cause.errors() if cause is not None and hasattr(cause, "errors") else []
    if errors and "input" in errors[0]:
        value, kind = errors[0]["input"], str(errors[0].get("type", ""))
        low, high = getattr(param, "min", None), getattr(param, "max", None)
        if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than") and (
            low is not None or high is not None
        ):
            span = (
                f"{low}<=x<={high}"
                if low is not None and high is not None
                else f"x>={low}"
                if high is None
                else f"x<={high}"
            )
            return f"{value} is not in the range {span}"
        return f"{value!r}: {_lower_first(message)}"
    return _lower_first(message)


def _command_names() -> list[str]:
    return [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]


def _usage_message(exc: Any, args: Sequence[str]) -> str:
    """A click/typer usage error as one line: what is wrong, and where the help is."""
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command", None)
    path = getattr(ctx, "command_path", None)
    if not path:  # the option parser raises some errors without a context: find the command in args
        named = next((a for a in args if not a.startswith("-")), None)
        path = f"backfill {named}" if named in _command_names() else "backfill"
    commands = list(getattr(command, "commands", None) or ())
    param = getattr(exc, "param", None)
    option = getattr(exc, "option_name", None)
    message = _first_line(exc.format_message() if hasattr(exc, "format_message") else str(exc))
    if isinstance(exc, _exception_classes("NoArgsIsHelpError")):
        what = f"no command given: use one of {', '.join(commands)}" if commands else "arguments are missing"
    elif isinstance(exc, _exception_classes("MissingParameter")) and param is not None:
        what = f"missing {getattr(param, 'param_type_name', 'parameter')} {_param_name(param)}"
    elif param is not None:
        what = f"{_param_name(param)}: {_bad_value(exc, param)}"
    elif isinstance(exc, _exception_classes("NoSuchOption")) and option:
        close = sorted(getattr(exc, "possibilities", None) or ())
        what = f"no such option {option}" + (f": did you mean {' or '.join(close)}?" if close else "")
        if option in ("--verbose", "-v"):
            what += " (global options go before the command: backfill --verbose run …)"
    elif isinstance(exc, _exception_classes("BadOptionUsage")) and option and not _given_a_value(option, args):
        what = f"{option}: the value is missing"  # (a flag given a value, --flag=x, is the other misuse)
    else:
        what = _lower_first(message)
        what = what if what.endswith("?") else what.rstrip(".")
        # A plain usage error of a group is a missing or unknown command: list them, unless typer
        # suggested close ones itself (it does for a name with close matches, as difflib finds them).
        if commands and type(exc) in _exception_classes("UsageError") and not _close_commands(args, commands):
            what += f": use one of {', '.join(commands)}"
    return f"{what} (see {path} --help)"


def _given_a_value(option: str, args: Sequence[str]) -> bool:
    """Whether ``option`` was given as ``--option=value`` (a value in the same word)."""
    return any(arg.split("=", 1)[0] == option for arg in args if "=" in arg)


def _close_commands(args: Sequence[str], commands: Sequence[str]) -> list[str]:
    """The commands close to the command given (what typer suggests with "Did you mean …?")."""
    given = next((a for a in args if not a.startswith("-")), None)
    return difflib.get_close_matches(given, commands) if given is not None else []


def _error(message: str, exc: BaseException | None = None, code: int = 1) -> None:
    """Print ``error: message`` as one line on stderr; with --verbose, the traceback before it. Under
    ``--json`` the error is also one JSON object on stdout (``{"error": …, "kind": …, "exit_code": …}``),
    so that a script reading the output gets JSON whatever happened, and a person still reads the line."""
    if exc is not None and _options["verbose"]:
        traceback.print_exception(exc, file=sys.stderr)
    if _options["json"]:
        kind = type(exc).__name__ if isinstance(exc, BackfillError) else "UsageError" if code == 2 else "Error"
        print(json.dumps({"error": message, "kind": kind, "exit_code": code}))
    err_console.print(Text.assemble(("error:", "red"), " ", message))


def run_cli(args: Sequence[str] | None = None) -> int:
    """Run the ``backfill`` app on ``args`` (default: the command line) and return its exit code,
    every error already printed as one line. What :func:`main` exits with."""
    argv = list(args) if args is not None else sys.argv[1:]
    usage_errors = _exception_classes("UsageError")
    other_click_errors = _exception_classes("ClickException")
    exits = _exception_classes("Exit")
    aborts = _exception_classes("Abort")
    _options.update(verbose=False, interrupt_reported=False, terminated=False, json="--json" in argv)
    try:
        with _sigterm_interrupts():
            # standalone_mode=False: exceptions come here instead of click's multi-line usage blocks and
            # tracebacks; typer then *returns* an exit code (130 after Ctrl-C) instead of raising it.
            result = app(args=argv, prog_name="backfill", standalone_mode=False)
    except BackfillError as exc:
        _error(str(exc), exc, exc.exit_code)
        return exc.exit_code
    except usage_errors as exc:
        code = int(getattr(exc, "exit_code", 2) or 2)
        _error(_usage_message(exc, argv), code=code)  # no traceback even with --verbose: it is the input
        return code
    except other_click_errors as exc:
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        code = int(getattr(exc, "exit_code", 1) or 1)
        _error(_lower_first(_first_line(text)), exc, code)
        return code
    except exits as exc:
        result = getattr(exc, "exit_code", 0)
    except aborts as exc:
        _error("aborted", exc)
        return 1
    except KeyboardInterrupt:
        result = _interrupt_code()
    except Exception as exc:
        first = _first_line(str(exc))
        what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        _error(what if _options["verbose"] else f"{what} (run with --verbose for the traceback)", exc)
        return 1
    code = result if isinstance(result, int) and not isinstance(result, bool) else 0
    if code == 130:  # typer's code for any KeyboardInterrupt, SIGTERM's included
        code = _interrupt_code()
    if code in (130, 143) and not _options["interrupt_reported"]:
        err_console.print("interrupted")
    return code


def _interrupt_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM (128 + the signal's number, the shell's convention)."""
    return 128 + (signal.SIGTERM if _options["terminated"] else signal.SIGINT)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a worker cancelling, ``kill``) unwinds a command like Ctrl-C does, instead of killing the
    process with no word: one line, exit 143. A running backfill takes both signals over while its flow
    runs (:mod:`prefect_backfill.stopping`) and stops in order."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        _options["terminated"] = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    """Entry point (``backfill``): one-line errors for everything the user can get wrong, and the exit
    codes of :data:`~prefect_backfill.errors.EXIT_CODES`."""
    from prefect_backfill import phases

    phases.mark("main")  # the interpreter started and the CLI's modules are imported
    code = run_cli()
    phases.mark("exit")  # what remains is the interpreter's teardown (Spark's JVM, the embedded server)
    if code in (130, 143):
        # Interrupted: what the run did is recorded and said. Leave at once, as a signal would: the
        # interpreter's teardown could wait on a JVM still starting in a warm-up thread, or on Prefect's
        # services, after the user asked to stop. The JVM and the embedded server end with this process.
        with contextlib.suppress(Exception):
            logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        sys.exit(code)
