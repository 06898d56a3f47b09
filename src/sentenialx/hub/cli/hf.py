"""``sentenialx models import-hf SOURCE [--repo ID …]``: adopt a Hugging Face cache, verified."""

from __future__ import annotations

from pathlib import Path

import click

from sentenialx.hub.cli import hub_option, json_option, open_hub, print_json


@click.command("import-hf")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--repo", "repos", multiple=True, metavar="ID",
              help="Import only this repo (repeatable; default: every repo in SOURCE).")
@hub_option
@json_option
def import_hf(source: Path, repos: tuple[str, ...], hub_path: str | None, as_json: bool) -> None:
    """Import revisions from a Hugging Face cache, repo, snapshot or download folder.

    Every file is checked against the sha256 or git blob id the cache recorded before
    anything is registered; revisions become versions, refs (main, tags) aliases.
    Running it again adds nothing, and completes an interrupted run.
    """
    from sentenialx.hub._import_hf import import_hf as run_import

    hub = open_hub(hub_path)
    try:
        rep = run_import(hub, source, repos=repos)
    finally:
        hub.close()
    if as_json:
        print_json(rep.to_dict())
        return
    for r in rep.results:
        aliases = f"  aliases: {', '.join(r.aliases)}" if r.aliases else ""
        click.echo(f"{r.status:<8} {r.repo_id}@{r.commit[:12]} -> {r.ref}"
                   f"  sha256:{r.digest[:12]}{aliases}")
    imported = sum(1 for r in rep.results if r.status == "imported")
    click.echo(f"{imported} imported, {len(rep.results) - imported} already there")
    for note in rep.notes:
        click.echo(f"note: {note}", err=True)
