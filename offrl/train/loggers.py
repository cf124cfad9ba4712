"""Metric sinks: JSONL and CSV always; TensorBoard and Weights & Biases when asked.

Each record is ``{"step": int, "kind": "train" | "eval", **metrics}``. ``metrics.jsonl`` is the
source of truth (append-only, one strictly valid JSON object per line: a non-finite number is
``null``); ``metrics.csv`` is rewritten atomically after every record, so both files are
consistent at every moment, a kill included (a line cut by a kill is ignored on reading).
W&B runs in offline mode unless ``WANDB_MODE`` says otherwise, so no network is needed;
``wandb sync`` uploads later.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from offrl.io import atomic_write_text, json_safe

__all__ = ["MetricLogger", "read_metrics"]


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file (a truncated last line is ignored)."""
    records: list[dict[str, Any]] = []
    p = Path(path)
    if not p.exists():
        return records
    with p.open() as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a kill: everything after it is suspect too
    return records


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, allow_nan=False) + "\n"


class MetricLogger:
    """Writes metrics of one run directory to every enabled back end.

    Args:
        run_dir: the run directory.
        tensorboard: also write TensorBoard event files under ``run_dir/tensorboard``.
        wandb: also log to Weights & Biases (offline mode by default) under ``run_dir``.
        config: the resolved run config (sent to W&B).
        resume_step: when resuming, records after this step are dropped (they were logged by the
            killed run after its last checkpoint and will be logged again).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        tensorboard: bool = False,
        wandb: bool = False,
        config: dict[str, Any] | None = None,
        resume_step: int | None = None,
        project: str = "offrl",
    ) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.dir / "metrics.jsonl"
        self._records: list[dict[str, Any]] = []
        if resume_step is not None:
            self._records = [r for r in read_metrics(self.jsonl_path) if r["step"] <= resume_step]
            atomic_write_text(self.jsonl_path, "".join(_line(r) for r in self._records))
        elif self.jsonl_path.exists():
            self.jsonl_path.unlink()
        self.write_csv()
        self._jsonl = self.jsonl_path.open("a")
        self._tb: Any = None
        self._wandb: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.dir / "tensorboard"))
        if wandb:
            import wandb as wandb_lib

            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            self._wandb = wandb_lib.init(
                project=project,
                dir=str(self.dir),
                config=config or {},
                name=self.dir.name,
                id=self.dir.name.replace("/", "-"),
                resume="allow",
            )

    def log(self, step: int, kind: str, metrics: dict[str, Any]) -> None:
        """Record ``metrics`` at ``step`` (``None`` values go to JSONL/CSV only)."""
        record = json_safe({"step": step, "kind": kind, **metrics})
        self._jsonl.write(_line(record))
        self._jsonl.flush()
        self._records.append(record)
        self.write_csv()
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k if "/" in k else f"{kind}/{k}", v, step)
        if self._wandb is not None:
            self._wandb.log(
                {k if "/" in k else f"{kind}/{k}": v for k, v in scalars.items()}, step=step
            )

    def logged(self, step: int, kind: str) -> dict[str, Any] | None:
        """The last record of ``kind`` logged at ``step`` (this run's, a resumed one's kept
        records included), or ``None``."""
        found = [r for r in self._records if r["step"] == step and r["kind"] == kind]
        return found[-1] if found else None

    def write_csv(self) -> Path:
        """Rewrite ``metrics.csv`` (atomically) from the records so far, union of all columns."""
        columns: list[str] = []
        for r in self._records:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self._records)
        path = self.dir / "metrics.csv"
        atomic_write_text(path, buf.getvalue())
        return path

    def close(self) -> None:
        """Flush and close every back end."""
        self._jsonl.close()
        self.write_csv()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
