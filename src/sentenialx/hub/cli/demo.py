"""``sentenialx demo``: the README's main job."""

from __future__ import annotations

import click


@click.command()
@click.option("--hub", "hub_path", default=None, metavar="PATH",
              help="Hub folder to create (default: a fresh ./demo-hub-<time> folder).")
@click.option("--quick", is_flag=True, help="Skip training; register a generated sample model.")
def demo(hub_path: str | None, quick: bool) -> None:
    """Run the end-to-end demo in a fresh hub."""
    from sentenialx.demo import run_demo

    run_demo(hub_path, quick=quick)
