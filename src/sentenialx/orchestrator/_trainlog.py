"""A job's training log (``train_log.jsonl``) and its charts (``loss.png``, ``accuracy.png``)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from sentenialx.hub.errors import require
from sentenialx.orchestrator._io import atomic_write_bytes

LOG_NAME = "train_log.jsonl"
LOSS_CHART = "loss.png"
ACCURACY_CHART = "accuracy.png"


class TrainLog:
    """Rows of numbers, one per epoch (or step), kept in order and written once."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.rows: list[dict[str, Any]] = []

    def add(self, **fields: float | int | str) -> None:
        """Append one row; floats are rounded to 6 decimals so the log is stable and readable."""
        row: dict[str, Any] = {"job": self.job}
        for k, v in fields.items():
            if isinstance(v, float):
                if not math.isfinite(v):
                    raise ValueError(f"train log field {k!r} is {v}")
                v = round(v, 6)
            row[k] = v
        self.rows.append(row)

    def write(self, out_dir: Path) -> tuple[Path, Path, Path]:
        """Write the JSONL log and both charts into ``out_dir``.

        Returns:
            The log, the loss chart and the accuracy chart, in that order.
        """
        log = out_dir / LOG_NAME
        body = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in self.rows)
        atomic_write_bytes(log, body.encode())
        loss = out_dir / LOSS_CHART
        acc = out_dir / ACCURACY_CHART
        atomic_write_bytes(loss, self._chart("loss", "loss"))
        atomic_write_bytes(acc, self._chart("accuracy", "accuracy"))
        return log, loss, acc

    def _chart(self, suffix: str, ylabel: str) -> bytes:
        require("matplotlib", "train")
        # The object API, not pyplot: no global figure state and the Agg canvas
        # whatever backend the process chose.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        keys = sorted({k for r in self.rows for k in r if k.endswith(suffix)})
        positive = True
        fig = Figure(figsize=(6.4, 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for key in keys:
            pts = [(r["epoch"], r[key]) for r in self.rows if key in r and "epoch" in r]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=key)
                positive = positive and min(ys) > 0
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if suffix == "loss" and keys and positive:
            ax.set_yscale("log")
        if suffix == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{self.job}: {ylabel}")
        ax.grid(True, alpha=0.3)
        if keys:
            ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()
