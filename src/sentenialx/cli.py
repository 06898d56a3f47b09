"""Entry point of the ``sentenialx`` command.

``sentenialx models path REF`` is what scripts call in a loop, so it has a fast
path that answers from the SQLite index with the standard library only (no
click, rich or SQLAlchemy import). Anything unusual falls through to the full
CLI, which gives the proper error.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run the CLI."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 3 and args[0] == "models" and args[1] == "path":
        from sentenialx.hub._fastpath import fast_path

        out = fast_path(args[2:])
        if out is not None:
            sys.stdout.write(out + "\n")
            return
    from sentenialx.hub.cli import cli

    cli.main(args=args, prog_name="sentenialx")


if __name__ == "__main__":
    main()
