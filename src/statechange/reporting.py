"""Where a training run's numbers go besides the console and ``log.jsonl``: TensorBoard, Weights & Biases.

Both receive the same values under the same names:

- ``step/<name>`` every ``--log-every-steps`` optimiser steps: loss, state_loss, action_loss,
  grad_norm, lr (heads) and lr_backbone (when fine-tuned), at the run's optimiser step;
- ``train/<name>`` and ``val/<metric>`` once per epoch, and ``val/<category>/<metric>`` for each
  category, at the epoch (TensorBoard) or the epoch's last optimiser step with an ``epoch`` value
  beside it (W&B, whose history has one step axis);
- the run's settings (flattened, ``optim.lr`` ...) and its final metrics: TensorBoard's HParams
  tab (a ``hparams`` run inside the TensorBoard folder), W&B's config and summary.

W&B runs offline when ``WANDB_MODE=offline`` (the tests do); its files go to ``OUTPUT/wandb`` and a
resumed run continues the same W&B run (its id is kept in ``OUTPUT/wandb-run-id``).
"""

from __future__ import annotations

import importlib.util
import secrets
import shutil
from pathlib import Path
from typing import Any

from statechange._io import write_text
from statechange.errors import StateChangeError

TENSORBOARD = "tensorboard"
WANDB = "wandb"
NO_REPORT = "none"
REPORT_CHOICES = (TENSORBOARD, WANDB, NO_REPORT)
DEFAULT_WANDB_PROJECT = "statechange"
DEFAULT_LOG_EVERY_STEPS = 50  # optimiser steps between per-step records
WANDB_ID_FILE = "wandb-run-id"
WANDB_DIR = "wandb"  # what wandb writes under OUTPUT
HPARAMS_RUN = "hparams"  # the TensorBoard run (sub-folder) holding the settings and the final metrics
EPOCH_SCALARS = ("loss", "state_loss", "action_loss", "grad_norm", "lr", "lr_backbone")


def check_report_to(report_to: tuple[str, ...]) -> None:
    """Refuse, before any work, a reporter that is unknown or whose package is missing."""
    for name in report_to:
        if name not in REPORT_CHOICES:
            raise StateChangeError(f"--report-to {name} is not one of {', '.join(REPORT_CHOICES)}.")
    if WANDB in report_to and importlib.util.find_spec("wandb") is None:
        raise StateChangeError("--report-to wandb needs the wandb package: pip install 'statechange[wandb]' "
                               "(or leave out --report-to wandb).")


def flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested settings as one level of ``a.b`` names; values other than numbers, bools and strings as text."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = str(value)  # lists, None
    return flat


def epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of an epoch's log record under their reported names (``train/``, ``val/``, per category)."""
    scalars = {f"train/{key}": record[key] for key in EPOCH_SCALARS if record.get(key) is not None}
    for key, value in (record.get("metrics") or {}).items():
        if isinstance(value, int | float):
            scalars[f"val/{key}"] = value
    for category, row in (record.get("per_category") or {}).items():
        for key, value in row.items():
            if isinstance(value, int | float) and key != "n_videos":
                scalars[f"val/{category}/{key}"] = value
    return scalars


class TensorBoardReporter:
    """Scalars in ``directory`` (TensorBoard's event files); nothing when tensorboard is not installed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writer: Any = None

    def writer(self) -> Any:
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional at run time
                return None
            self._writer = SummaryWriter(str(self.directory))
        return self._writer

    def step(self, step: int, values: dict[str, float]) -> None:
        writer = self.writer()
        if writer is not None:
            for key, value in values.items():
                writer.add_scalar(f"step/{key}", value, step)

    def epoch(self, record: dict[str, Any]) -> None:
        writer = self.writer()
        if writer is not None:
            for tag, value in epoch_scalars(record).items():
                writer.add_scalar(tag, value, record["epoch"])
            writer.flush()

    def finish(self, settings: dict[str, Any], metrics: dict[str, float]) -> None:
        """The HParams tab: the run's settings beside its final metrics (written once, replaced on a rerun)."""
        writer = self.writer()
        if writer is None:
            return
        shutil.rmtree(self.directory / HPARAMS_RUN, ignore_errors=True)
        writer.add_hparams(flat_settings(settings), {f"hparams/{k}": v for k, v in metrics.items()},
                           run_name=HPARAMS_RUN)
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WandbReporter:
    """The same values in a Weights & Biases run (started at the first value, so a failed set-up leaves none)."""

    def __init__(self, output: Path, project: str, settings: dict[str, Any]) -> None:
        self.output, self.project, self.settings = output, project, settings
        self._run: Any = None

    def run(self) -> Any:
        if self._run is None:
            import wandb

            id_file = self.output / WANDB_ID_FILE
            run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)  # W&B's id length
            self.output.mkdir(parents=True, exist_ok=True)
            write_text(id_file, run_id + "\n")
            self._run = wandb.init(project=self.project, dir=str(self.output), id=run_id, resume="allow",
                                   name=self.output.name, config=flat_settings(self.settings))
        return self._run

    def step(self, step: int, values: dict[str, float]) -> None:
        self.run().log({f"step/{key}": value for key, value in values.items()}, step=step)

    def epoch(self, record: dict[str, Any]) -> None:
        self.run().log({**epoch_scalars(record), "epoch": record["epoch"]}, step=record["step"])

    def finish(self, settings: dict[str, Any], metrics: dict[str, float]) -> None:
        self.run().summary.update({f"final/{key}": value for key, value in metrics.items()})

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
