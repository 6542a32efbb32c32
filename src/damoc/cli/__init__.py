"""The `damoc` command line: parse, load config, call one function, print the result.

Every command module under ``damoc.cli`` attaches its commands to the apps in ``damoc.cli.apps``.
A :class:`~damoc.errors.DamocError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import typer

from damoc.cli.apps import app
from damoc.errors import DamocError
from damoc.io.redact import install_log_redaction, redact
from damoc.logging_utils import setup_logging

# The work (configs, models, data: pydantic, torch, transformers) is imported inside each command, when it
# runs: `damoc --help` imports every command module and stays fast.

COMMAND_MODULES = ["zoo", "layers", "filter", "compress", "calibrated", "finescope", "select"]


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug messages.")) -> None:
    setup_logging(verbose)
    install_log_redaction()


@app.command()
def validate(
    job: Path = typer.Argument(..., help="A YAML job file (its 'job:' key names the kind)."),
) -> None:
    """Check a YAML job file without running it: unknown keys, bad values and missing inputs are reported."""
    from damoc.config import check_job_inputs, load_job

    cfg = load_job(job)
    check_job_inputs(cfg)
    typer.echo(f"{job}: valid '{cfg.job}' job")


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        mod = f"damoc.cli.{name}"
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def _click_error_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage-error types, abort types) of the click that typer uses: recent typer ships its own copy."""
    usage: list[type] = []
    abort: list[type] = [typer.Abort]
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        usage.append(mod.ClickException)
        if hasattr(mod, "Abort"):
            abort.append(mod.Abort)
    return tuple(usage), tuple(abort)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    _load_commands()
    try:
        rc = app(args=argv, standalone_mode=False)
    except DamocError as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except (
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ) as exc:
        # a path the up-front checks could not foresee (it changed while the command ran): still one line
        typer.echo(f"error: {_one_line(exc)}", err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # usage errors (click's, or typer's own copy of click in typer >= 0.2x)
        usage, abort = _click_error_types()
        if isinstance(exc, abort):
            typer.echo("aborted", err=True)
            return 130
        if isinstance(exc, usage):  # one line, as for every other bad input, with a pointer to --help
            ctx = getattr(exc, "ctx", None)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            typer.echo(f"error: {_one_line_text(exc.format_message())}{where}", err=True)
            return getattr(exc, "exit_code", 2)
        raise
    return rc if isinstance(rc, int) else 0


def _one_line_text(text: str) -> str:
    return redact(" ".join(text.split()))


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line, with credentials masked."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return _one_line_text(f"{exc.filename}: {exc.strerror or exc}")
    return _one_line_text(str(exc))


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
