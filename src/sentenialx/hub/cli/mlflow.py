"""``sentenialx models import-mlflow --tracking-uri URI [--model NAME …]``: adopt an MLflow registry."""

from __future__ import annotations

import os

import click

from sentenialx.hub.cli import hub_option, json_option, open_hub, print_json


@click.command("import-mlflow")
@click.option("--tracking-uri", "tracking_uri", required=True, metavar="URI",
              help="MLflow tracking URI: http(s)://server, sqlite:///mlflow.db, a file store…")
@click.option("--registry-uri", "registry_uri", metavar="URI",
              help="MLflow registry URI, if not the tracking URI.")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="A registered model to import (repeatable; default: every model).")
@hub_option
@json_option
def import_mlflow(tracking_uri: str, registry_uri: str | None, models: tuple[str, ...],
                  hub_path: str | None, as_json: bool) -> None:
    """Import registered models from MLflow: versions, aliases, tags, metrics and lineage.

    Every version's files are downloaded through MLflow, checked against MLflow's listing,
    hashed and registered whole, in MLflow's order (semver N.0.0 for MLflow version N, or
    its sentenialx.version tag). Versions already imported are skipped, so a re-run adds
    nothing and an interrupted import resumes.
    """
    from sentenialx.hub._import_mlflow import import_mlflow as run

    # MLflow draws a bar per download on stderr; ours is one line per version on stdout.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with open_hub(hub_path) as hub:
        rep = run(hub, tracking_uri, models=models, registry_uri=registry_uri)
    if as_json:
        print_json(rep.to_dict())
        return
    for v in rep.versions:
        what = "imported" if v.status == "imported" else "present "
        click.echo(f"{what} {v.model}@{v.version}  (MLflow version {v.mlflow_version})"
                   f"  sha256:{v.digest[:12]}")
    for a in rep.aliases:
        click.echo(f"alias    {a['model']}@{a['alias']} -> {a['version']}"
                   + (f"  (was {a['previous']})" if a["previous"] else ""))
    click.echo(f"{len(rep.imported)} imported, {len(rep.versions) - len(rep.imported)} already"
               f" there, {len(rep.aliases)} aliases moved")
    for note in rep.notes:
        click.echo(f"note: {note}", err=True)
