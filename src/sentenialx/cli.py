"""Entry point of the ``sentenialx`` command.

``sentenialx models list|versions|show|path`` on the embedded default are what
people and scripts run most, so they are answered from the SQLite index with the
standard library only (no click, rich, SQLAlchemy or Alembic import), by the same
read rules and the same output code as the full CLI (``sentenialx.hub._fastpath``).
Anything unusual falls through to the full CLI, which gives the proper error.
"""

from __future__ import annotations

import sys

_READS = ("list", "versions", "show", "path")
"""The commands the cold start may answer (it declines anything else itself)."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "models" and args[1] in _READS:
        from sentenialx.hub._fastpath import fast_cli

        out = fast_cli(args)
        if out is not None:
            try:
                sys.stdout.write(out + "\n")
                return
            except UnicodeEncodeError:
                pass  # nothing was written: the full CLI prints it as click would
    from sentenialx.hub.cli import cli

    cli.main(args=args, prog_name="sentenialx")


if __name__ == "__main__":
    main()
