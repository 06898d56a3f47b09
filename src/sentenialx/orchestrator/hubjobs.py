"""Jobs that train from the hub and register into it: no path written by hand.

Each step reads its inputs as verified bytes from the hub (by ref), runs a job
from :mod:`sentenialx.orchestrator.jobs` in a scratch folder, and registers what
the job wrote with its metrics, parameters, log, charts, report and lineage
(parents by resolved ref, training-data digest).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentenialx.hub.hub import Hub
    from sentenialx.hub.values import VersionInfo
    from sentenialx.orchestrator.jobs import JobResult

Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


def _verified_copy(hub: Hub, ref: str, dest: Path) -> Path:
    """Write the verified weights of ``ref`` to ``dest`` (a job reads a path, the hub gives bytes)."""
    dest.write_bytes(hub.open_bytes(ref))
    return dest


def _register(hub: Hub, model: str, path: Path, result: JobResult, *,
              parents: dict[str, str] | None = None, version: str | None = None,
              bump: str | None = None, exclude: tuple[Path, ...] = (), **extra: Any) -> VersionInfo:
    kw = result.register_kwargs(parents)
    kw["attachments"] = [(r, p) for r, p in kw["attachments"] if p not in exclude]
    if parents is not None:
        kw["parents"] = [f"{role}={ref}" for role, ref in parents.items()]
    return hub.register(model, path, version=version, bump=bump, **kw, **extra)


def train_base(hub: Hub, *, work: Path | None = None, seed: int = 0, say: Say = _quiet,
               **job_args: Any) -> tuple[VersionInfo, VersionInfo]:
    """Train the text encoder and the teacher; register ``encoder`` and ``teacher``."""
    from sentenialx.orchestrator.jobs import run_encoder_and_teacher_job

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        say("training encoder + teacher (torch, CPU)")
        r = run_encoder_and_teacher_job(Path(tmp), seed=seed, **job_args)
        enc_file, teacher_file = r.files[0], r.files[1]
        enc = _register(hub, "encoder", enc_file, r, parents={})
        teacher = _register(hub, "teacher", teacher_file, r, parents={"encoder": enc.ref})
    say(f"registered {enc.ref}, {teacher.ref} (teacher accuracy"
        f" {teacher.meta.get('metrics', {}).get('accuracy', 0):.4f})")
    return enc, teacher


def distill(hub: Hub, *, encoder: str = "encoder", teacher: str = "teacher", better: bool = False,
            seed: int = 0, bump: str | None = None, work: Path | None = None, say: Say = _quiet,
            **job_args: Any) -> VersionInfo:
    """Distil a student from ``teacher`` (soft labels), export ONNX, register ``distill``."""
    from sentenialx.orchestrator.jobs import BETTER_STUDENT, run_distill_job

    enc_v, teacher_v = hub.resolve(encoder), hub.resolve(teacher)
    args = dict(BETTER_STUDENT) if better else {}
    args.update(job_args)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        d = Path(tmp)
        say(f"distilling a {'wider ' if better else ''}student from {teacher_v.ref}")
        r = run_distill_job(d / "job", encoder=_verified_copy(hub, enc_v.ref, d / "encoder.pt"),
                            teacher=_verified_copy(hub, teacher_v.ref, d / "teacher.pt"),
                            seed=seed, encoder_name=enc_v.model, teacher_name=teacher_v.model,
                            **args)
        v = _register(hub, "distill", r.files[0], r, bump=bump,
                      parents={"teacher": teacher_v.ref, "encoder": enc_v.ref})
    m = v.meta.get("metrics", {})
    say(f"registered {v.ref}: accuracy {m.get('accuracy', 0):.4f}, false positives"
        f" {m.get('false_positive_rate', 0):.4f}, p95 {m.get('latency_p95_ms', 0):.3f} ms")
    return v


def adapt(hub: Hub, *, base: str = "distill", seed: int = 0, work: Path | None = None,
          say: Say = _quiet, **job_args: Any) -> VersionInfo:
    """Train a LoRA adapter teaching ``base`` a new attack family; register ``lora`` (a folder)."""
    from sentenialx.orchestrator.jobs import run_lora_job

    base_v = hub.resolve(base)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        d = Path(tmp)
        say(f"training a LoRA adapter on {base_v.ref}")
        r = run_lora_job(d / "job", base=_verified_copy(hub, base_v.ref, d / "threat_student.onnx"),
                         seed=seed, base_name=base_v.model, **job_args)
        folder = r.files[0].parent
        inside = tuple(p for _, p in r.attachments if p.parent == folder)
        v = _register(hub, "lora", folder, r, parents={"base": base_v.ref}, exclude=inside)
    m = v.meta.get("metrics", {})
    say(f"registered {v.ref}: new family accuracy {m.get('new_family_accuracy_before', 0):.2f}"
        f" -> {m.get('new_family_accuracy', 0):.2f}")
    return v
