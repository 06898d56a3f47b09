"""``sentenialx train ...``: training jobs that read from and register into the hub."""

from __future__ import annotations

import logging

import click

from sentenialx.hub.cli import HubGroup, hub_option, json_option, open_hub, print_json


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _quiet_libs() -> None:
    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)


@click.group(cls=HubGroup)
def train() -> None:
    """Train, distil and adapt models; every job registers what it wrote."""


@train.command()
@click.option("--seed", default=0, show_default=True, type=int)
@hub_option
@json_option
def base(seed: int, hub_path: str | None, as_json: bool) -> None:
    """Train the text encoder and the teacher; register `encoder` and `teacher`."""
    from sentenialx.orchestrator import hubjobs

    _quiet_libs()
    enc, teacher = hubjobs.train_base(open_hub(hub_path), seed=seed, say=_say)
    if as_json:
        print_json({"encoder": enc.to_dict(), "teacher": teacher.to_dict()})
    else:
        click.echo(f"{enc.ref}\n{teacher.ref}")


@train.command()
@click.option("--encoder", default="encoder", show_default=True, help="Encoder ref.")
@click.option("--teacher", default="teacher", show_default=True, help="Teacher ref.")
@click.option("--better", is_flag=True, help="A wider student with teacher-labelled extra data.")
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]))
@click.option("--seed", default=0, show_default=True, type=int)
@hub_option
@json_option
def distill(encoder: str, teacher: str, better: bool, bump: str | None, seed: int,
            hub_path: str | None, as_json: bool) -> None:
    """Distil an ONNX student from the teacher's soft labels; register `distill`."""
    from sentenialx.orchestrator import hubjobs

    _quiet_libs()
    v = hubjobs.distill(open_hub(hub_path), encoder=encoder, teacher=teacher, better=better,
                        bump=bump, seed=seed, say=_say)
    print_json(v.to_dict()) if as_json else click.echo(v.ref)


@train.command()
@click.option("--base", "base_ref", default="distill", show_default=True, help="Student ref to adapt.")
@click.option("--seed", default=0, show_default=True, type=int)
@hub_option
@json_option
def lora(base_ref: str, seed: int, hub_path: str | None, as_json: bool) -> None:
    """Teach the student a new attack family with a LoRA adapter; register `lora`."""
    from sentenialx.orchestrator import hubjobs

    _quiet_libs()
    v = hubjobs.adapt(open_hub(hub_path), base=base_ref, seed=seed, say=_say)
    print_json(v.to_dict()) if as_json else click.echo(v.ref)


@train.command("all")
@click.option("--seed", default=0, show_default=True, type=int)
@hub_option
def all_(seed: int, hub_path: str | None) -> None:
    """Run base, distill and lora in order."""
    from sentenialx.orchestrator import hubjobs

    _quiet_libs()
    hub = open_hub(hub_path)
    hubjobs.train_base(hub, seed=seed, say=_say)
    student = hubjobs.distill(hub, seed=seed, say=_say)
    hubjobs.adapt(hub, base=student.ref, seed=seed, say=_say)
