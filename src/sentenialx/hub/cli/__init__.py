"""The ``sentenialx`` command line: parse, one Hub call, print.

Errors become one line on stderr and a distinct exit code; :data:`EXIT_TABLE` is
the only place codes are assigned (the README's table is checked against it), and
:func:`exit_code_for` picks an error's code by its MRO. A traceback only with
``--debug`` or ``SENTENIALX_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from sentenialx.hub.errors import (
    AlreadyExists,
    Conflict,
    GateFailed,
    HubError,
    IntegrityError,
    InvalidInput,
    MissingDependency,
    NotFound,
    PermissionDenied,
    SignatureError,
    StateError,
    StoreUnavailable,
    UnsafeArtifact,
    one_line,
)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
"""verify, fsck or log --verify found problems."""
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class ExitCode:
    """One row of the exit-code table.

    Attributes:
        code: the process exit status.
        meaning: what it tells a script, as the README says it.
        errors: the exception classes that exit with it (matched by MRO).
    """

    code: int
    meaning: str
    errors: tuple[type[BaseException], ...] = ()


EXIT_TABLE: tuple[ExitCode, ...] = (
    ExitCode(EXIT_OK, "success"),
    ExitCode(EXIT_CHECK_FAILED, "a check found problems (`verify`, `fsck`, `log --verify`), or a hub"
             " error with no code of its own", (HubError,)),
    ExitCode(EXIT_USAGE, "bad command-line usage", (click.UsageError,)),
    ExitCode(3, "not found: model, version, alias or file", (NotFound,)),
    ExitCode(4, "already exists: versions are immutable", (AlreadyExists,)),
    ExitCode(5, "invalid input: name, ref, version, metadata, path, size", (InvalidInput,)),
    ExitCode(6, "integrity: bytes differ from the manifest", (IntegrityError,)),
    ExitCode(7, "signature missing or untrusted", (SignatureError,)),
    ExitCode(8, "unsafe artifact, e.g. a pickle that would run code", (UnsafeArtifact,)),
    ExitCode(9, "conflict: a concurrent change won", (Conflict,)),
    ExitCode(10, "the index or store is unavailable, or a file cannot be read or written",
             (StoreUnavailable, OSError)),
    ExitCode(11, "an optional dependency is missing; the message names the extra", (MissingDependency,)),
    ExitCode(12, "a promotion gate failed", (GateFailed,)),
    ExitCode(13, "a hub state is older than one seen, expired or forged", (StateError,)),
    ExitCode(14, "the token is missing, unknown, or lacks the scope or model", (PermissionDenied,)),
    ExitCode(EXIT_INTERNAL, "internal error (a bug: rerun with `--debug` and report it)", (Exception,)),
    ExitCode(EXIT_INTERRUPTED, "interrupted (Ctrl-C)", (KeyboardInterrupt,)),
)
"""Every exit status the CLI uses, in README order."""

EXIT_CODES: dict[type[BaseException], int] = {e: row.code for row in EXIT_TABLE for e in row.errors}
"""Exception class -> exit code, derived from :data:`EXIT_TABLE`."""


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an exception: the row of the nearest class in its MRO.

    ``AlreadyExists`` is also a ``FileExistsError`` and so an ``OSError``; its own row
    wins because it comes first in its MRO.
    """
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_INTERNAL


def debug_enabled() -> bool:
    """True when tracebacks should be shown."""
    return os.environ.get("SENTENIALX_DEBUG") == "1"


class HubGroup(click.Group):
    """A click group that turns hub errors into one line and an exit code.

    Commands may be registered lazily (:meth:`lazy_commands`): a command's module is
    imported only when that command runs or the group lists its help, so a command
    loads only what it needs (start-up is most of a small command's time).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, str] = {}

    def lazy_commands(self, targets: dict[str, str]) -> None:
        """Register commands by ``{name: "module:attribute"}``, imported on first use."""
        self._lazy.update(targets)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._lazy.pop(cmd_name, None)
        if target is not None and cmd_name not in self.commands:
            import importlib

            module, attr = target.split(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def all_commands(self) -> dict[str, click.Command]:
        """Every command, the lazy ones loaded."""
        ctx = click.Context(self)
        found = {name: self.get_command(ctx, name) for name in self.list_commands(ctx)}
        return {name: cmd for name, cmd in found.items() if cmd is not None}

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HubError as exc:
            if debug_enabled():
                raise
            click.echo(f"error: {one_line(exc, limit=2000)}", err=True)
            sys.exit(exit_code_for(exc))
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:
            click.echo("interrupted", err=True)
            sys.exit(exit_code_for(exc))
        except OSError as exc:
            if debug_enabled():
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(f"error: {one_line(exc.strerror or exc)}{where}", err=True)
            sys.exit(exit_code_for(exc))
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            if debug_enabled():
                raise
            click.echo(f"internal error: {type(exc).__name__}: {exc}; rerun with --debug"
                       " and report it", err=True)
            sys.exit(exit_code_for(exc))


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None:
        ctx.meta[f"sentenialx.{param.name}"] = value
    return value


def hub_option(f: F) -> F:
    """``--hub PATH`` on every command, plus ``--index URL`` / ``--store URL`` / ``--s3-endpoint``."""
    f = click.option("--s3-endpoint", "s3_endpoint", envvar="SENTENIALX_S3_ENDPOINT",
                     metavar="URL", expose_value=False, callback=_remember,
                     help="S3 endpoint (default: AWS config / AWS_ENDPOINT_URL).")(f)
    f = click.option("--store", "store", envvar="SENTENIALX_STORE", metavar="URL",
                     expose_value=False, callback=_remember,
                     help="Blob store, e.g. s3://bucket/prefix (default: the hub folder).")(f)
    f = click.option("--index", "index", envvar="SENTENIALX_INDEX", metavar="URL",
                     expose_value=False, callback=_remember,
                     help="Index database, e.g. postgresql://user@host/db (default: SQLite).")(f)
    return click.option("--hub", "hub_path", envvar="SENTENIALX_HUB", default=None,
                        metavar="PATH",
                        help="Hub folder (default: $SENTENIALX_HUB or ./models/artifacts).")(f)


def json_option(f: F) -> F:
    """``--json`` for programs."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def open_hub(hub_path: str | None) -> Any:
    """Open the hub the options name."""
    from sentenialx.hub.hub import Hub

    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx else {}
    index, store = meta.get("sentenialx.index"), meta.get("sentenialx.store")
    if index or store:
        from sentenialx.hub.config import read_config

        root = hub_path or os.environ.get("SENTENIALX_HUB") or "models/artifacts"
        cfg = read_config(Path(root))
        hub = Hub(root, index_url=index or cfg.get("index"), store_url=store or cfg.get("store"),
                  s3_endpoint=meta.get("sentenialx.s3_endpoint") or cfg.get("s3_endpoint"))
    else:
        hub = Hub.open(hub_path)
    if ctx is not None:
        # Closed when the command ends, so the last SQLite connection to close is a
        # writer and takes the WAL with it (a read-only one left open would keep it).
        ctx.call_on_close(hub.close)
    return hub


def print_json(obj: Any) -> None:
    """Print JSON to stdout."""
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def console() -> Any:
    """A rich console on stdout."""
    from rich.console import Console

    return Console()


@click.group(cls=HubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="sentenialx")
def cli(debug: bool) -> None:
    """Sentenial-X: threat-detection models kept in a versioned, verifiable hub."""
    if debug:
        os.environ["SENTENIALX_DEBUG"] = "1"


def _register_commands() -> None:
    cli.lazy_commands({name: f"sentenialx.hub.cli.{name}:{name}"
                       for name in ("models", "demo", "keys", "train", "tuf")})


_register_commands()
