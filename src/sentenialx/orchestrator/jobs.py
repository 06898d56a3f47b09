"""Training jobs: each is a function that writes files into a folder and says what it wrote.

The chain, with the default held-out family ``credential_phishing``::

    base = run_encoder_and_teacher_job(out / "teacher")            # encoder.pt, teacher.pt
    student = run_distill_job(out / "distill",
                              encoder=base.files[0], teacher=base.files[1])   # threat_student.onnx
    lora = run_lora_job(out / "lora", base=student.files[0])       # adapter/adapter.safetensors

Every job also writes ``train_log.jsonl`` (one JSON object per epoch; epoch 0 is
the model before training), ``loss.png`` and ``accuracy.png``, and ``job.json``
(its :class:`JobResult`, paths relative to the folder). A job does not touch the
hub: the caller registers ``files`` with ``attachments``, ``metadata`` and
``lineage`` (see :meth:`JobResult.register_kwargs`).

Jobs are deterministic for a given seed and thread count: the same arguments
give the same weights, logs and charts (reports and latency metrics vary with
the machine's load). Torch's global RNG and thread count are restored after.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from sentenialx.hub.errors import InvalidInput, require
from sentenialx.orchestrator._io import atomic_write_bytes
from sentenialx.orchestrator._trainlog import TrainLog
from sentenialx.orchestrator.dataset import LABELS, NEW_FAMILY, Dataset, make_dataset
from sentenialx.pipeline.features import BUCKETS, FEATURIZER, NGRAM, FeatureSpec

__all__ = [
    "BETTER_STUDENT",
    "ENCODER_FILE",
    "JOB_FILE",
    "JobResult",
    "REPORT_FILE",
    "STUDENT_FILE",
    "TEACHER_FILE",
    "run_distill_job",
    "run_encoder_and_teacher_job",
    "run_lora_job",
]

ENCODER_FILE = "encoder.pt"
TEACHER_FILE = "teacher.pt"
STUDENT_FILE = "threat_student.onnx"
ADAPTER_DIR = "adapter"
CONFIG_FILE = "config.json"
REPORT_FILE = "report.md"
JOB_FILE = "job.json"
_TRANSFER_SEED_OFFSET = 1_000_003
MIN_ACCURACY = 0.95
"""Held-out accuracy the student must reach (the hub's production gate uses the same bar)."""

BETTER_STUDENT: Mapping[str, Any] = MappingProxyType(
    {"hidden": (64,), "epochs": 30, "transfer_per_class": 600}
)
"""Keyword arguments for :func:`run_distill_job` that give a better student for a later
release (``run_distill_job(out, encoder=..., teacher=..., **BETTER_STUDENT)``): a wider
head, trained on 600 more unlabelled texts per class that the teacher labels. With the
default data it beats the default student's held-out accuracy (0.9796 against 0.9759)
at the same false positive rate."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a job wrote and how to describe it to the hub.

    Attributes:
        job: the job's name: ``encoder_teacher``, ``distill`` or ``lora``.
        out_dir: the folder the job wrote into.
        files: the weights, in a fixed order per job (see each job).
        attachments: ``(role, path)`` pairs; roles are ``log``, ``chart``, ``report``, ``config``.
        metadata: ``framework``, ``format``, ``description``, ``params`` (hyperparameters),
            ``inputs``, ``outputs`` and ``metrics`` (numbers, or a dict of numbers for
            ``per_class``), JSON-ready.
        lineage: ``data_digest`` (sha256 of the canonical JSONL of the data the job used),
            ``parents`` (role -> model name, plain strings) and ``parent_sha256``
            (role -> sha256 of the parent file read).
    """

    job: str
    out_dir: Path
    files: list[Path]
    attachments: list[tuple[str, Path]]
    metadata: dict[str, Any]
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, Any]:
        """``metadata["metrics"]``."""
        metrics: dict[str, Any] = self.metadata.get("metrics", {})
        return metrics

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; paths are relative to ``out_dir``."""
        return {
            "job": self.job,
            "files": [p.relative_to(self.out_dir).as_posix() for p in self.files],
            "attachments": [[r, p.relative_to(self.out_dir).as_posix()] for r, p in self.attachments],
            "metadata": self.metadata,
            "lineage": self.lineage,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], out_dir: Path) -> JobResult:
        """Inverse of :meth:`to_dict`, with paths resolved under ``out_dir``.

        Raises:
            InvalidInput: a field is missing.
        """
        try:
            return cls(
                job=str(data["job"]),
                out_dir=out_dir,
                files=[out_dir / p for p in data["files"]],
                attachments=[(str(r), out_dir / p) for r, p in data["attachments"]],
                metadata=dict(data["metadata"]),
                lineage=dict(data.get("lineage", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"job description is malformed ({type(exc).__name__}: {exc})") from None

    @classmethod
    def load(cls, out_dir: Path) -> JobResult:
        """Read the ``job.json`` a job left in ``out_dir``.

        Raises:
            InvalidInput: there is none, or it is malformed.
        """
        p = Path(out_dir) / JOB_FILE
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{p}: not a job description ({exc})") from None
        return cls.from_dict(data, Path(out_dir))

    def register_kwargs(self, parent_refs: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Keyword arguments for ``Hub.register`` (all but ``model`` and ``path``).

        Args:
            parent_refs: role -> hub ref of each parent (``{"teacher": "teacher@1.0.0"}``);
                parents without one are named by their model name as given to the job.
        """
        refs = dict(parent_refs or {})
        parents = [f"{role}={refs.get(role, name)}" for role, name in self.lineage.get("parents", {}).items()]
        return {
            "metadata": self.metadata,
            "parents": parents,
            "data_digest": self.lineage.get("data_digest"),
            "attachments": list(self.attachments),
        }


# --------------------------------------------------------------------------------------
# Shared machinery
# --------------------------------------------------------------------------------------


@contextmanager
def _torch_env(seed: int, threads: int) -> Iterator[Any]:
    """Torch with ``threads`` threads and a seeded RNG; both restored on exit."""
    torch: Any = require("torch", "train")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield torch
    finally:
        torch.set_num_threads(previous)


@dataclass(slots=True)
class _Split:
    texts: tuple[str, ...]
    y: npt.NDArray[np.int64]
    x: Any  # torch.Tensor [n, buckets]


@dataclass(slots=True)
class _Data:
    full: Dataset
    used: Dataset
    spec: FeatureSpec
    train: _Split
    val: _Split
    test: _Split
    new_test: _Split | None


def _prepare(torch: Any, *, data_seed: int, per_class: int, exclude: str | None, spec: FeatureSpec) -> _Data:
    full = make_dataset(data_seed, per_class=per_class)
    used = full.without(exclude)

    def split(ds: Dataset) -> _Split:
        return _Split(
            ds.texts, np.asarray(ds.labels, dtype=np.int64), torch.from_numpy(spec.featurize(ds.texts))
        )

    new_test = split(full.only(exclude).split("test")) if exclude else None
    return _Data(
        full,
        used,
        spec,
        split(used.split("train")),
        split(used.split("val")),
        split(used.split("test")),
        new_test,
    )


def _data_params(data: _Data, *, data_seed: int, per_class: int, holdout: str | None) -> dict[str, Any]:
    return {
        "seed": data_seed,
        "per_class": per_class,
        "holdout": holdout,
        "digest": data.used.digest(),
        "full_digest": data.full.digest(),
        "sizes": {"train": len(data.train.texts), "val": len(data.val.texts), "test": len(data.test.texts)},
    }


def _metrics(
    pred: npt.NDArray[np.int64], y: npt.NDArray[np.int64], *, classes: Sequence[int]
) -> dict[str, Any]:
    """accuracy, false_positive_rate (benign predicted as any attack) and per_class accuracy."""
    out: dict[str, Any] = {"accuracy": float((pred == y).mean()) if len(y) else 0.0}
    benign = y == LABELS.index("benign")
    out["false_positive_rate"] = float((pred[benign] != y[benign]).mean()) if benign.any() else 0.0
    out["per_class"] = {LABELS[c]: float((pred[y == c] == c).mean()) for c in classes if (y == c).any()}
    return out


def _latency(fn: Callable[[Any], object], items: Sequence[Any], *, runs: int) -> tuple[float, float]:
    """p50 and p95 in milliseconds of ``fn(item)``, one item at a time, cycling through ``items``."""
    for item in items[:10]:
        fn(item)
    times = []
    for i in range(runs):
        item = items[i % len(items)]
        start = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - start) * 1000.0)
    p50, p95 = np.percentile(np.asarray(times), [50, 95])
    return round(float(p50), 4), round(float(p95), 4)


def _state_bytes(torch: Any, module: Any) -> bytes:
    """A state dict as torch.save bytes: a plain dict of contiguous tensors, nothing else,
    so ``torch.load(weights_only=True)`` and the hub's pickle scan accept it."""
    import io

    sd = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


def _load_state(path: Path) -> dict[str, Any]:
    """Load a state dict written by a job, through the hub's scanned weights-only loader."""
    from sentenialx.hub.loaders.torch import load_torch

    if not path.is_file():
        raise InvalidInput(f"{str(path)!r} does not exist or is not a file")
    obj = load_torch(path.read_bytes(), name=path.name)
    if not isinstance(obj, dict):
        raise InvalidInput(f"{path.name} holds a {type(obj).__name__}, not a state dict")
    return obj


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fit(
    torch: Any,
    *,
    seed: int,
    params: Sequence[Any],
    n: int,
    y: Any,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    forward: Callable[[Any], tuple[Any, Any]],
    evaluate: Callable[[], dict[str, float]],
    log: TrainLog,
    set_train: Callable[[bool], object],
) -> None:
    """AdamW over shuffled mini-batches, one log row per epoch.

    ``forward(idx)`` returns ``(loss, logits)`` for the train examples ``idx``; the
    row's ``loss`` and ``accuracy`` are their running means over the epoch (epoch 0
    is the model before training, over the whole train split), the rest comes from
    ``evaluate()``.
    """
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)
    gen = torch.Generator().manual_seed(seed)
    set_train(False)
    with torch.no_grad():
        loss, logits = forward(torch.arange(n))
    log.add(step=0, epoch=0, lr=lr, loss=float(loss), accuracy=_acc(logits, y), **evaluate())
    step = 0
    for epoch in range(1, epochs + 1):
        set_train(True)
        perm = torch.randperm(n, generator=gen)
        total, correct = 0.0, 0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            loss, logits = forward(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            total += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(1) == y[idx]).sum())
        set_train(False)
        log.add(step=step, epoch=epoch, lr=lr, loss=total / n, accuracy=correct / n, **evaluate())


def _finish(out_dir: Path, result: JobResult) -> JobResult:
    atomic_write_bytes(
        out_dir / JOB_FILE, (json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n").encode()
    )
    return result


def _features_io(spec: FeatureSpec, n_out: int, out_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    inputs = {"features": {"dtype": "float32", "shape": ["N", spec.buckets], **spec.to_dict()}}
    outputs = {out_name: {"dtype": "float32", "shape": ["N", n_out], "labels": list(LABELS)}}
    return inputs, outputs


def _check_common(*, epochs: int, threads: int, holdout: str | None) -> None:
    if epochs < 1:
        raise InvalidInput(f"epochs must be at least 1 (got {epochs})")
    if threads < 1:
        raise InvalidInput(f"threads must be at least 1 (got {threads})")
    if holdout is not None and holdout not in LABELS[1:]:
        raise InvalidInput(f"holdout {holdout!r} is not an attack family ({', '.join(LABELS[1:])})")


# --------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------


def run_encoder_and_teacher_job(
    out_dir: Path,
    *,
    seed: int = 0,
    data_seed: int = 0,
    per_class: int = 600,
    holdout: str | None = NEW_FAMILY,
    buckets: int = BUCKETS,
    ngram: int = NGRAM,
    embed_dim: int = 128,
    hidden: Sequence[int] = (256, 256),
    dropout: float = 0.3,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    threads: int = 1,
    latency_runs: int = 300,
) -> JobResult:
    """Train the encoder projection and the teacher head together, end to end.

    The model is ``features [N, buckets] -> ReLU(Linear(buckets, embed_dim)) -> MLP(hidden)
    -> logits [N, 7]``, trained with cross-entropy on the train split of the dataset
    without ``holdout`` (the output for it exists but never sees an example).

    Writes ``encoder.pt`` (``proj.weight``, ``proj.bias``) and ``teacher.pt`` (the head:
    ``fc1.*`` .. ``out.*``), both plain state dicts loadable with
    ``torch.load(weights_only=True)``; ``config.json`` (sizes, featurizer, labels, data);
    ``train_log.jsonl``, ``loss.png``, ``accuracy.png``; ``job.json``.

    Args:
        out_dir: the folder to write into (created).
        seed: seeds initialisation, dropout and shuffling.
        data_seed: the dataset seed (:func:`~.dataset.make_dataset`).
        per_class: dataset examples per label.
        holdout: the family kept out of training; ``None`` trains on every family.
        buckets: featurizer width.
        ngram: featurizer n-gram size.
        embed_dim: the encoder's output width.
        hidden: the teacher's hidden layer widths.
        dropout: teacher dropout while training.
        epochs: passes over the train split.
        batch_size: examples per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        threads: torch threads while the job runs (1 is fastest on a busy 2-core machine:
            more threads than free cores makes OpenMP spin).
        latency_runs: single-input inferences timed for the latency metrics.

    Returns:
        ``files`` = ``[encoder.pt, teacher.pt]``; metrics of encoder+teacher on the
        held-out test split of the trained classes (latency: featurize + torch, one
        input at a time).

    Raises:
        InvalidInput: an argument is out of range.
        MissingDependency: torch or matplotlib is not installed (extra ``train``).
    """
    _check_common(epochs=epochs, threads=threads, holdout=holdout)
    out_dir = Path(out_dir)
    spec = FeatureSpec(buckets=buckets, ngram=ngram)
    with _torch_env(seed, threads) as torch:
        from sentenialx.orchestrator.models import Classifier, Encoder, count_params, make_head

        data = _prepare(torch, data_seed=data_seed, per_class=per_class, exclude=holdout, spec=spec)
        model = Classifier(
            Encoder(buckets, embed_dim), make_head(embed_dim, hidden, len(LABELS), dropout=dropout)
        )
        f = torch.nn.functional
        ytr, yva = torch.from_numpy(data.train.y), torch.from_numpy(data.val.y)
        log = TrainLog("encoder_teacher")

        def forward(idx: Any) -> tuple[Any, Any]:
            logits = model(data.train.x[idx])
            return f.cross_entropy(logits, ytr[idx]), logits

        def evaluate() -> dict[str, float]:
            with torch.no_grad():
                lva = model(data.val.x)
                return {"val_loss": float(f.cross_entropy(lva, yva)), "val_accuracy": _acc(lva, yva)}

        _fit(
            torch,
            seed=seed,
            params=list(model.parameters()),
            n=len(ytr),
            y=ytr,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            forward=forward,
            evaluate=evaluate,
            log=log,
            set_train=model.train,
        )
        model.eval()
        with torch.no_grad():
            pred = model(data.test.x).argmax(1).numpy()
            new_pred = model(data.new_test.x).argmax(1).numpy() if data.new_test else None
        trained = sorted(set(data.used.labels))
        metrics = _metrics(pred, data.test.y, classes=trained)
        if new_pred is not None and data.new_test is not None:
            metrics["new_family_accuracy"] = float((new_pred == data.new_test.y).mean())

        def one(text: str) -> object:
            with torch.no_grad():
                return model(torch.from_numpy(spec.featurize([text])))

        metrics["latency_p50_ms"], metrics["latency_p95_ms"] = _latency(
            one, data.test.texts, runs=latency_runs
        )
        n_enc, n_head = count_params(model.encoder), count_params(model.head)
        metrics["parameters"] = n_enc + n_head
        enc_path, teacher_path = out_dir / ENCODER_FILE, out_dir / TEACHER_FILE
        atomic_write_bytes(enc_path, _state_bytes(torch, model.encoder))
        atomic_write_bytes(teacher_path, _state_bytes(torch, model.head))

    params = {
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "embed_dim": embed_dim,
        "hidden": list(hidden),
        "dropout": dropout,
        "optimizer": "AdamW",
        "loss": "cross_entropy",
        "threads": threads,
        "dataset": _data_params(data, data_seed=data_seed, per_class=per_class, holdout=holdout),
    }
    config = {
        "schema": "sentenialx.orchestrator.encoder-teacher/v1",
        "labels": list(LABELS),
        "featurizer": spec.to_dict(),
        "encoder": {
            "file": ENCODER_FILE,
            "in": buckets,
            "out": embed_dim,
            "activation": "relu",
            "parameters": n_enc,
        },
        "teacher": {
            "file": TEACHER_FILE,
            "in": embed_dim,
            "hidden": list(hidden),
            "out": len(LABELS),
            "parameters": n_head,
        },
        "params": params,
    }
    cfg_path = out_dir / CONFIG_FILE
    atomic_write_bytes(cfg_path, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    log_path, loss_png, acc_png = log.write(out_dir)
    inputs, outputs = _features_io(spec, len(LABELS), "logits")
    outputs["embedding"] = {"dtype": "float32", "shape": ["N", embed_dim], "from": ENCODER_FILE}
    metadata = {
        "framework": "pytorch",
        "format": "torch",
        "description": (
            f"Sentenial-X text encoder ({FEATURIZER}, {buckets} -> {embed_dim}, ReLU) and teacher "
            f"MLP {list(hidden)} over {len(LABELS)} labels; "
            + (f"trained without {holdout}" if holdout else "trained on every family")
        ),
        "params": params,
        "inputs": inputs,
        "outputs": outputs,
        "metrics": metrics,
    }
    lineage = {"data_digest": data.used.digest(), "parents": {}, "parent_sha256": {}}
    return _finish(
        out_dir,
        JobResult(
            job="encoder_teacher",
            out_dir=out_dir,
            files=[enc_path, teacher_path],
            attachments=[("log", log_path), ("chart", loss_png), ("chart", acc_png), ("config", cfg_path)],
            metadata=metadata,
            lineage=lineage,
        ),
    )


def _acc(logits: Any, y: Any) -> float:
    return float((logits.argmax(1) == y).float().mean())


def run_distill_job(
    out_dir: Path,
    *,
    encoder: Path,
    teacher: Path,
    seed: int = 0,
    data_seed: int = 0,
    per_class: int = 600,
    holdout: str | None = NEW_FAMILY,
    ngram: int = NGRAM,
    hidden: Sequence[int] = (16,),
    finetune_encoder: bool = False,
    transfer_per_class: int = 0,
    temperature: float = 4.0,
    alpha: float = 0.7,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    threads: int = 1,
    latency_runs: int = 500,
    encoder_name: str = "encoder",
    teacher_name: str = "teacher",
) -> JobResult:
    """Distill the teacher into a small student head and export encoder + student as ONNX.

    The encoder is frozen unless ``finetune_encoder`` (by default the exported graph embeds
    ``encoder.pt`` unchanged); the
    student head learns from ``alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))
    + (1 - alpha) * CE(student, label)`` on the train split of the dataset without
    ``holdout``. The teacher's data, featurizer and holdout must match the ones given here.

    Writes ``threat_student.onnx``: input ``features`` float32 ``[N, buckets]``, output
    ``probs`` float32 ``[N, 7]`` (softmax, :data:`~.dataset.LABELS` order), labels and
    featurizer in its ``metadata_props``; ``report.md`` (teacher vs student per class on
    the held-out test split, agreement, parameter counts, file sizes, latency);
    ``train_log.jsonl``, ``loss.png``, ``accuracy.png``; ``job.json``.

    Args:
        out_dir: the folder to write into (created).
        encoder: ``encoder.pt`` from :func:`run_encoder_and_teacher_job`.
        teacher: ``teacher.pt`` from the same job.
        seed: seeds the student's initialisation and shuffling.
        data_seed: the dataset seed the teacher was trained with.
        per_class: dataset examples per label, as for the teacher.
        holdout: the family held out, as for the teacher.
        ngram: the featurizer n-gram size the encoder was trained with (its width
            comes from ``encoder.pt``).
        hidden: the student head's hidden layer widths.
        finetune_encoder: also train the encoder projection (by the same loss); the
            exported graph then holds a fine-tuned copy of ``encoder.pt``.
        transfer_per_class: also distill on this many unlabelled texts per class drawn
            from another dataset seed (any text of the labelled dataset left out), with the
            teacher's soft labels and its argmax as the hard label.
        temperature: the distillation temperature ``T``.
        alpha: weight of the soft-label loss (``1 - alpha`` goes to the hard labels).
        epochs: passes over the train split.
        batch_size: examples per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        threads: torch threads while the job runs (1 is fastest on a busy 2-core machine:
            more threads than free cores makes OpenMP spin).
        latency_runs: single-input inferences timed for the latency metrics.
        encoder_name: the encoder's model name, recorded in the lineage.
        teacher_name: the teacher's model name, recorded in the lineage.

    Returns:
        ``files`` = ``[threat_student.onnx]``; metrics of the ONNX student (run with
        onnxruntime) on the held-out test split of the trained classes, among them
        ``accuracy``, ``teacher_accuracy``, ``agreement`` and latency (featurize +
        onnxruntime, one input at a time; ``model_latency_*`` is onnxruntime alone).

    Raises:
        InvalidInput: a weights file is missing or not a state dict of the right shape,
            or an argument is out of range.
        UnsafeArtifact: a weights file fails the hub's pickle scan.
        MissingDependency: torch, onnx, onnxscript, onnxruntime or matplotlib is not
            installed (extra ``train``).
    """
    _check_common(epochs=epochs, threads=threads, holdout=holdout)
    if temperature <= 0 or not 0 <= alpha <= 1:
        raise InvalidInput(f"temperature must be > 0 and alpha in [0, 1] (got {temperature}, {alpha})")
    out_dir, encoder, teacher = Path(out_dir), Path(encoder), Path(teacher)
    enc_sd, teacher_sd = _load_state(encoder), _load_state(teacher)
    from sentenialx.orchestrator.export import export_classifier_onnx
    from sentenialx.pipeline.predict import open_session, predict_proba_onnx

    with _torch_env(seed, threads) as torch:
        from sentenialx.orchestrator.models import (
            Classifier,
            count_params,
            encoder_from_state_dict,
            head_from_state_dict,
            head_layer,
            make_head,
        )

        enc = encoder_from_state_dict(enc_sd).eval()
        t_head = head_from_state_dict(teacher_sd).eval()
        spec = FeatureSpec(buckets=enc.proj.in_features, ngram=ngram)
        dim = enc.proj.out_features
        first = head_layer(t_head, "fc1" if hasattr(t_head, "fc1") else "out")
        if first.in_features != dim:
            raise InvalidInput(f"{teacher.name} does not take the encoder's {dim}-wide embedding")
        data = _prepare(torch, data_seed=data_seed, per_class=per_class, exclude=holdout, spec=spec)
        xs = {s: getattr(data, s).x for s in ("train", "val", "test")}
        ytr, yva = torch.from_numpy(data.train.y), torch.from_numpy(data.val.y)
        n_transfer = 0
        if transfer_per_class:
            # Unlabelled texts from another seed, labelled by the teacher alone: the
            # student sees more of the input space than the labelled split covers.
            seen = set(data.full.texts)
            extra = [
                t
                for t in make_dataset(data_seed + _TRANSFER_SEED_OFFSET, per_class=transfer_per_class)
                .without(holdout)
                .texts
                if t not in seen
            ]
            n_transfer = len(extra)
            xs["train"] = torch.cat([xs["train"], torch.from_numpy(spec.featurize(extra))])
        with torch.no_grad():
            emb = {s: enc(x) for s, x in xs.items()}
            t_logits = {s: t_head(e) for s, e in emb.items()}
        if n_transfer:
            ytr = torch.cat([ytr, t_logits["train"][len(ytr) :].argmax(1)])
        student = make_head(dim, hidden, len(LABELS))
        model = Classifier(enc, student)
        for p in enc.parameters():
            p.requires_grad_(finetune_encoder)
        f = torch.nn.functional

        def logits_of(split: str, idx: Any = None) -> Any:
            if finetune_encoder:
                x = xs[split]
                return model(x if idx is None else x[idx])
            e = emb[split]  # the frozen encoder's output, computed once
            return student(e if idx is None else e[idx])

        soft_tr = f.softmax(t_logits["train"] / temperature, dim=1)

        def kd_parts(logits: Any, soft: Any, y: Any) -> tuple[Any, Any]:
            kd = f.kl_div(f.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean")
            return kd * temperature**2, f.cross_entropy(logits, y)

        def forward(idx: Any) -> tuple[Any, Any]:
            logits = logits_of("train", idx)
            kd, ce = kd_parts(logits, soft_tr[idx], ytr[idx])
            return alpha * kd + (1 - alpha) * ce, logits

        soft_va = f.softmax(t_logits["val"] / temperature, dim=1)
        log = TrainLog("distill")

        def evaluate() -> dict[str, float]:
            with torch.no_grad():
                lva = logits_of("val")
                vkd, vce = kd_parts(lva, soft_va, yva)
                return {
                    "val_loss": float(alpha * vkd + (1 - alpha) * vce),
                    "val_kd_loss": float(vkd),
                    "val_ce_loss": float(vce),
                    "val_accuracy": _acc(lva, yva),
                    "val_agreement": float((lva.argmax(1) == t_logits["val"].argmax(1)).float().mean()),
                }

        _fit(
            torch,
            seed=seed,
            params=[p for p in model.parameters() if p.requires_grad],
            n=len(ytr),
            y=ytr,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            forward=forward,
            evaluate=evaluate,
            log=log,
            set_train=model.train,
        )
        model.eval()
        onnx_bytes = export_classifier_onnx(model, labels=LABELS, spec=spec)
        with torch.no_grad():
            torch_pred = logits_of("test").argmax(1).numpy()
            teacher_pred = t_logits["test"].argmax(1).numpy()
        n_enc, n_teacher, n_student = count_params(enc), count_params(t_head), count_params(student)

    onnx_path = out_dir / STUDENT_FILE
    atomic_write_bytes(onnx_path, onnx_bytes)
    session = open_session(onnx_bytes)
    probs = predict_proba_onnx(session, data.test.texts)
    pred = probs.argmax(1)
    trained = sorted(set(data.used.labels))
    metrics = _metrics(pred, data.test.y, classes=trained)
    teacher_m = _metrics(teacher_pred, data.test.y, classes=trained)
    metrics["teacher_accuracy"] = teacher_m["accuracy"]
    metrics["agreement"] = float((pred == teacher_pred).mean())
    metrics["onnx_torch_agreement"] = float((pred == torch_pred).mean())
    if data.new_test is not None:
        new_pred = predict_proba_onnx(session, data.new_test.texts).argmax(1)
        metrics["new_family_accuracy"] = float((new_pred == data.new_test.y).mean())
    metrics["latency_p50_ms"], metrics["latency_p95_ms"] = _latency(
        lambda t: predict_proba_onnx(session, [t]), data.test.texts, runs=latency_runs
    )
    rows = list(spec.featurize(data.test.texts)[:, None, :])
    metrics["model_latency_p50_ms"], metrics["model_latency_p95_ms"] = _latency(
        lambda x: session.run(["probs"], {"features": x}), rows, runs=latency_runs
    )
    metrics["parameters"] = n_enc + n_student
    metrics["teacher_parameters"] = n_enc + n_teacher

    params = {
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "hidden": list(hidden),
        "temperature": temperature,
        "alpha": alpha,
        "optimizer": "AdamW",
        "loss": "alpha*T^2*KL + (1-alpha)*CE",
        "encoder_frozen": not finetune_encoder,
        "transfer_per_class": transfer_per_class,
        "transfer_examples": n_transfer,
        "threads": threads,
        "dataset": _data_params(data, data_seed=data_seed, per_class=per_class, holdout=holdout),
    }
    sizes = {
        ENCODER_FILE: encoder.stat().st_size,
        TEACHER_FILE: teacher.stat().st_size,
        STUDENT_FILE: onnx_path.stat().st_size,
    }
    report = _distill_report(
        metrics=metrics,
        teacher_metrics=teacher_m,
        params=params,
        spec=spec,
        counts={"encoder": n_enc, "teacher head": n_teacher, "student head": n_student},
        sizes=sizes,
        n_test=len(data.test.texts),
        holdout=holdout,
    )
    report_path = out_dir / REPORT_FILE
    atomic_write_bytes(report_path, report.encode())
    log_path, loss_png, acc_png = log.write(out_dir)
    inputs, outputs = _features_io(spec, len(LABELS), "probs")
    metadata = {
        "framework": "onnx",
        "format": "onnx",
        "description": (
            f"Sentenial-X threat classifier: encoder + distilled student head {list(hidden)} "
            f"as one ONNX graph (features float32[N,{spec.buckets}] -> probs float32[N,{len(LABELS)}])"
        ),
        "params": params,
        "inputs": inputs,
        "outputs": outputs,
        "metrics": metrics,
    }
    lineage = {
        "data_digest": data.used.digest(),
        "parents": {"teacher": teacher_name, "encoder": encoder_name},
        "parent_sha256": {"teacher": _sha256(teacher), "encoder": _sha256(encoder)},
    }
    return _finish(
        out_dir,
        JobResult(
            job="distill",
            out_dir=out_dir,
            files=[onnx_path],
            attachments=[("report", report_path), ("log", log_path), ("chart", loss_png), ("chart", acc_png)],
            metadata=metadata,
            lineage=lineage,
        ),
    )


def _distill_report(
    *,
    metrics: dict[str, Any],
    teacher_metrics: dict[str, Any],
    params: dict[str, Any],
    spec: FeatureSpec,
    counts: dict[str, int],
    sizes: dict[str, int],
    n_test: int,
    holdout: str | None,
) -> str:
    acc = metrics["accuracy"]
    verdict = "meets" if acc >= MIN_ACCURACY else "DOES NOT meet"
    lines = [
        "# Distillation report: threat_student",
        "",
        f"Held-out test accuracy of the ONNX student: **{acc:.4f}**, which {verdict} the "
        f"{MIN_ACCURACY:.2f} bar (teacher: {metrics['teacher_accuracy']:.4f}; {n_test} test examples of "
        f"the {len(metrics['per_class'])} trained classes).",
        "",
        "| class | teacher | student |",
        "| --- | ---: | ---: |",
    ]
    for name, v in metrics["per_class"].items():
        lines.append(f"| {name} | {teacher_metrics['per_class'].get(name, 0.0):.4f} | {v:.4f} |")
    lines += [
        f"| **all** | **{teacher_metrics['accuracy']:.4f}** | **{acc:.4f}** |",
        "",
        f"- Agreement (student argmax = teacher argmax on the test split): {metrics['agreement']:.4f}",
        f"- ONNX vs torch student agreement: {metrics['onnx_torch_agreement']:.4f}",
        f"- False positive rate (benign flagged as an attack): teacher "
        f"{teacher_metrics['false_positive_rate']:.4f}, student {metrics['false_positive_rate']:.4f}",
    ]
    if holdout is not None and "new_family_accuracy" in metrics:
        lines.append(
            f"- Held-out family `{holdout}` (never seen; taught later by LoRA): student accuracy "
            f"{metrics['new_family_accuracy']:.4f}"
        )
    lines += [
        "",
        "## Size",
        "",
        "| part | parameters |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v:,} |" for k, v in counts.items()]
    lines += [
        f"| teacher (encoder + head) | {metrics['teacher_parameters']:,} |",
        f"| student (encoder + head) | {metrics['parameters']:,} |",
        "",
        "| file | bytes |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v:,} |" for k, v in sizes.items()]
    lines += [
        "",
        "## Latency (CPU, one input at a time, onnxruntime with 1 thread)",
        "",
        "| measure | p50 ms | p95 ms |",
        "| --- | ---: | ---: |",
        f"| featurize + run | {metrics['latency_p50_ms']:.3f} | {metrics['latency_p95_ms']:.3f} |",
        f"| run only | {metrics['model_latency_p50_ms']:.3f} | {metrics['model_latency_p95_ms']:.3f} |",
        "",
        "## Interface",
        "",
        f"- input `features`: float32 [N, {spec.buckets}] from `{FEATURIZER}` (ngram {spec.ngram})",
        f"- output `probs`: float32 [N, {len(LABELS)}], columns {', '.join(LABELS)}",
        "",
        "## Training",
        "",
        f"- temperature {params['temperature']}, alpha {params['alpha']}, epochs {params['epochs']}, "
        f"hidden {params['hidden']}, lr {params['lr']}, batch {params['batch_size']}, seed {params['seed']}",
        f"- data: seed {params['dataset']['seed']}, {params['dataset']['per_class']} per class, held out "
        f"{params['dataset']['holdout']}, digest `{params['dataset']['digest']}`",
        "",
    ]
    return "\n".join(lines)


def run_lora_job(
    out_dir: Path,
    *,
    base: Path,
    seed: int = 0,
    data_seed: int = 0,
    per_class: int = 600,
    new_family: str = NEW_FAMILY,
    rank: int = 4,
    alpha: float = 8.0,
    targets: Sequence[str] = ("encoder.proj", "head.fc1"),
    modules_to_save: Sequence[str] = ("head.out",),
    epochs: int = 8,
    batch_size: int = 128,
    lr: float = 5e-3,
    weight_decay: float = 0.0,
    threads: int = 1,
    latency_runs: int = 300,
    base_name: str = "distill",
) -> JobResult:
    """Teach the base student a new attack family with a LoRA adapter.

    The base (an ONNX graph from :func:`run_distill_job`) is read back into torch,
    frozen, and each target layer gets a rank-``rank`` update trained with
    cross-entropy on the train split of the whole dataset (every family, the new one
    included).

    Writes ``adapter/adapter.safetensors`` and ``adapter/adapter_config.json`` (a
    PEFT-style adapter folder, see :mod:`.lora`); ``report.md`` (before/after per
    class); ``train_log.jsonl``, ``loss.png``, ``accuracy.png``; ``job.json``.

    Args:
        out_dir: the folder to write into (created).
        base: the base model's ``threat_student.onnx``.
        seed: seeds the adapter's initialisation and shuffling.
        data_seed: the dataset seed.
        per_class: dataset examples per label.
        new_family: the family the adapter teaches (metrics report it before and after).
        rank: the rank of each update (4 to 8 is plenty here).
        alpha: the LoRA alpha (updates are scaled by ``alpha / rank``).
        targets: the layers of the base that get a low-rank update.
        modules_to_save: layers trained in full and saved whole in the adapter (the
            output layer by default: its row for the new family, bias included, must
            move far from where base training left it).
        epochs: passes over the train split.
        batch_size: examples per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        threads: torch threads while the job runs (1 is fastest on a busy 2-core machine:
            more threads than free cores makes OpenMP spin).
        latency_runs: single-input inferences timed for the latency metrics.
        base_name: the base's model name, recorded in the lineage and the adapter config.

    Returns:
        ``files`` = ``[adapter/adapter.safetensors]`` (its folder is the PEFT-style
        adapter); ``adapter/adapter_config.json`` is the ``config`` attachment. Metrics
        are of the base with the adapter merged (:func:`~.lora.merge_adapter_onnx`, run
        with onnxruntime) on the held-out test split of all classes:
        ``accuracy``, ``new_family_accuracy`` and the same before training
        (``accuracy_before``, ``new_family_accuracy_before``).

    Raises:
        InvalidInput: the base is missing or not an exported classifier, a target is
            not one of its layers, or an argument is out of range.
        MissingDependency: torch, onnx, onnxruntime, safetensors or matplotlib is not
            installed (extra ``train``).
    """
    _check_common(epochs=epochs, threads=threads, holdout=new_family)
    if not 1 <= rank <= 64:
        raise InvalidInput(f"rank must be between 1 and 64 (got {rank})")
    out_dir, base = Path(out_dir), Path(base)
    if not base.is_file():
        raise InvalidInput(f"base model {str(base)!r} does not exist or is not a file")
    base_bytes = base.read_bytes()
    from sentenialx.orchestrator.export import classifier_from_onnx, onnx_labels_and_spec
    from sentenialx.orchestrator.lora import AdapterConfig, merge_adapter_onnx, save_adapter
    from sentenialx.pipeline.predict import open_session, predict_proba_onnx

    labels, spec = onnx_labels_and_spec(base_bytes)
    if tuple(labels) != LABELS:
        raise InvalidInput(f"base model's labels {labels} are not {list(LABELS)}")
    new_y = LABELS.index(new_family)
    with _torch_env(seed, threads) as torch:
        from sentenialx.orchestrator.models import apply_lora, count_params, lora_state_dict

        model = classifier_from_onnx(base_bytes)
        data = _prepare(torch, data_seed=data_seed, per_class=per_class, exclude=None, spec=spec)
        f = torch.nn.functional
        ytr, yva = torch.from_numpy(data.train.y), torch.from_numpy(data.val.y)
        val_new = yva == new_y
        with torch.no_grad():
            before = model(data.test.x).argmax(1).numpy()
        apply_lora(model, targets, rank=rank, alpha=alpha, seed=seed, modules_to_save=modules_to_save)
        trainable = [p for p in model.parameters() if p.requires_grad]
        log = TrainLog("lora")

        def forward(idx: Any) -> tuple[Any, Any]:
            logits = model(data.train.x[idx])
            return f.cross_entropy(logits, ytr[idx]), logits

        def evaluate() -> dict[str, float]:
            with torch.no_grad():
                lva = model(data.val.x)
                return {
                    "val_loss": float(f.cross_entropy(lva, yva)),
                    "val_accuracy": _acc(lva, yva),
                    "val_new_family_accuracy": _acc(lva[val_new], yva[val_new]),
                }

        _fit(
            torch,
            seed=seed,
            params=trainable,
            n=len(ytr),
            y=ytr,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            forward=forward,
            evaluate=evaluate,
            log=log,
            set_train=model.train,
        )
        model.eval()
        with torch.no_grad():
            torch_pred = model(data.test.x).argmax(1).numpy()
        tensors = {k: v.numpy() for k, v in lora_state_dict(model, modules_to_save).items()}
        n_adapter = sum(int(v.size) for v in tensors.values())
        n_base = count_params(model) - sum(int(v.size) for k, v in tensors.items() if ".lora_" in k)

    config = AdapterConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=tuple(targets),
        modules_to_save=tuple(modules_to_save),
        base_model=base_name,
        base_sha256=hashlib.sha256(base_bytes).hexdigest(),
        labels=LABELS,
        featurizer=spec.to_dict(),
        new_family=new_family,
    )
    weights_path, config_path = save_adapter(out_dir / ADAPTER_DIR, tensors, config)
    session = open_session(merge_adapter_onnx(base_bytes, tensors, config))
    pred = predict_proba_onnx(session, data.test.texts).argmax(1)
    all_classes = list(range(len(LABELS)))
    metrics = _metrics(pred, data.test.y, classes=all_classes)
    before_m = _metrics(before, data.test.y, classes=all_classes)
    is_new = data.test.y == new_y
    metrics["new_family_accuracy"] = float((pred[is_new] == new_y).mean())
    metrics["new_family_accuracy_before"] = float((before[is_new] == new_y).mean())
    metrics["known_accuracy"] = float((pred[~is_new] == data.test.y[~is_new]).mean())
    metrics["known_accuracy_before"] = float((before[~is_new] == data.test.y[~is_new]).mean())
    metrics["accuracy_before"] = before_m["accuracy"]
    metrics["false_positive_rate_before"] = before_m["false_positive_rate"]
    metrics["onnx_torch_agreement"] = float((pred == torch_pred).mean())
    metrics["latency_p50_ms"], metrics["latency_p95_ms"] = _latency(
        lambda t: predict_proba_onnx(session, [t]), data.test.texts, runs=latency_runs
    )
    metrics["parameters"] = n_adapter
    metrics["base_parameters"] = n_base

    params = {
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "rank": rank,
        "alpha": alpha,
        "targets": list(targets),
        "modules_to_save": list(modules_to_save),
        "new_family": new_family,
        "optimizer": "AdamW",
        "loss": "cross_entropy",
        "threads": threads,
        "dataset": _data_params(data, data_seed=data_seed, per_class=per_class, holdout=None),
    }
    report = _lora_report(metrics=metrics, before=before_m, params=params, n_test=len(data.test.texts))
    report_path = out_dir / REPORT_FILE
    atomic_write_bytes(report_path, report.encode())
    log_path, loss_png, acc_png = log.write(out_dir)
    inputs, outputs = _features_io(spec, len(LABELS), "probs")
    metadata = {
        "framework": "pytorch",
        "format": "safetensors",
        "description": (
            f"LoRA adapter (rank {rank}, alpha {alpha}) on {', '.join(targets)} of the threat "
            f"student, teaching {new_family}; merge with sentenialx.pipeline.lora.merge_adapter_onnx"
        ),
        "params": params,
        "inputs": inputs,
        "outputs": outputs,
        "metrics": metrics,
    }
    lineage = {
        "data_digest": data.used.digest(),
        "parents": {"base": base_name},
        "parent_sha256": {"base": hashlib.sha256(base_bytes).hexdigest()},
    }
    return _finish(
        out_dir,
        JobResult(
            job="lora",
            out_dir=out_dir,
            files=[weights_path],
            attachments=[
                ("config", config_path),
                ("report", report_path),
                ("log", log_path),
                ("chart", loss_png),
                ("chart", acc_png),
            ],
            metadata=metadata,
            lineage=lineage,
        ),
    )


def _lora_report(
    *, metrics: dict[str, Any], before: dict[str, Any], params: dict[str, Any], n_test: int
) -> str:
    fam = params["new_family"]
    lines = [
        f"# LoRA report: teaching `{fam}`",
        "",
        f"`{fam}` accuracy on the held-out test split: {metrics['new_family_accuracy_before']:.4f} before, "
        f"**{metrics['new_family_accuracy']:.4f}** after; all classes {metrics['accuracy_before']:.4f} -> "
        f"**{metrics['accuracy']:.4f}** ({n_test} test examples); the other classes "
        f"{metrics['known_accuracy_before']:.4f} -> {metrics['known_accuracy']:.4f}.",
        "",
        "| class | before | after |",
        "| --- | ---: | ---: |",
    ]
    for name, v in metrics["per_class"].items():
        lines.append(f"| {name} | {before['per_class'].get(name, 0.0):.4f} | {v:.4f} |")
    lines += [
        "",
        f"- False positive rate: {metrics['false_positive_rate_before']:.4f} -> "
        f"{metrics['false_positive_rate']:.4f}",
        f"- Adapter parameters: {metrics['parameters']:,} (base: {metrics['base_parameters']:,})",
        f"- Merged ONNX latency (featurize + run, one input): p50 {metrics['latency_p50_ms']:.3f} ms, "
        f"p95 {metrics['latency_p95_ms']:.3f} ms",
        f"- rank {params['rank']}, alpha {params['alpha']}, targets {', '.join(params['targets'])}, "
        f"epochs {params['epochs']}, lr {params['lr']}, seed {params['seed']}",
        "",
    ]
    return "\n".join(lines)
