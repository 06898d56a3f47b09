"""``sentenialx models copy SRC_HUB DST_HUB [REFS...]``: migrate or mirror versions between hubs."""

from __future__ import annotations

from typing import Any

import click

from sentenialx.hub._format import human_size
from sentenialx.hub.cli import json_option, print_json


def _open(location: str) -> Any:
    from sentenialx.hub.hub import Hub

    # A folder (its hub.toml names a PostgreSQL index and an S3 store, if any) or a
    # served hub's http(s) URL.
    return Hub.open(location)




@click.command()
@click.argument("src_hub", metavar="SRC_HUB")
@click.argument("dst_hub", metavar="DST_HUB")
@click.argument("refs", nargs=-1)
@json_option
def copy(src_hub: str, dst_hub: str, refs: tuple[str, ...], as_json: bool) -> None:
    """Copy versions REFS (default: every version of every model) from SRC_HUB to DST_HUB.

    Each hub is a folder (with hub.toml for PostgreSQL + S3) or an http(s) URL. Files,
    metadata, lineage, aliases, revocations, signatures and the source's history (as
    provenance) are carried; every byte is verified; what DST_HUB already holds is
    skipped, so an interrupted copy resumes when run again.
    """
    from sentenialx.hub._progress import byte_progress
    from sentenialx.hub.transfer import all_refs, closure_size, copy_hub

    src, dst = _open(src_hub), _open(dst_hub)
    try:
        wanted = list(refs) or all_refs(src)
        total = closure_size(src, wanted, include_revoked=True) if wanted else 0
        with byte_progress("copy", total) as progress:
            rep = copy_hub(src, dst, wanted, progress=progress)
    finally:
        src.close()
        dst.close()
    if as_json:
        print_json(rep.to_dict())
        return
    for r in rep.results:
        if r.status == "present":
            click.echo(f"present {r.ref}  sha256:{r.digest[:12]}  (already there)")
        else:
            click.echo(f"copied  {r.ref}  sha256:{r.digest[:12]}  ({r.files_sent} of {r.files}"
                       f" files sent, {human_size(r.bytes_sent)})"
                       + (f"  aliases: {', '.join(r.aliases)}" if r.aliases else ""))
    copied = sum(1 for r in rep.results if r.status == "copied")
    click.echo(f"{copied} copied, {len(rep.results) - copied} already there;"
               f" {len(rep.signatures)} signatures carried, {len(rep.provenance)} provenance"
               " records")
    for note in rep.notes:
        click.echo(f"note: {note}", err=True)
