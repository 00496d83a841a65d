"""Training rows with quarantine: rows whose media cannot be read (or that lack an input) are skipped, by id.

A bad sample never stops a run: it is left out of the dataset, logged with its reason, and listed
in ``skipped_samples.json`` next to the run's outputs, so the skip is visible in the artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from pydantic import BaseModel, Field
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from marc_ops.config import FINAL_MODEL_DIR
from marc_ops.io import (
    absolute_media,
    atomic_path,
    project_relative,
    safetensors_weights,
    weights_stamp,
    write_json,
    write_text,
)
from marc_ops.train.inputs import SampleBuilder, TrainingSample, check_media
from marc_ops.video import MediaError

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
FINGERPRINT_FILE = "run_fingerprint.txt"

SKIPPED_FILE = "skipped_samples.json"


@dataclass(frozen=True)
class SkippedSample:
    problem_id: str
    reason: str


def as_rows(rows: pl.DataFrame | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plain dict rows from a polars frame (manifest schema) or any iterable of mappings."""
    if isinstance(rows, pl.DataFrame):
        return list(rows.iter_rows(named=True))
    return [dict(row) for row in rows]


def usable_rows(
    rows: pl.DataFrame | Iterable[Mapping[str, Any]],
    *,
    missing_input: Callable[[Mapping[str, Any]], str | None] = lambda row: None,
) -> tuple[list[dict[str, Any]], list[SkippedSample]]:
    """Split ``rows`` into the usable ones and the skipped ones, each skip logged with its reason.

    A row is skipped when ``missing_input(row)`` names something it lacks (e.g. a video without a
    teacher reward) or its media file cannot be opened (:func:`~marc_ops.train.inputs.check_media`).
    """
    kept, skipped = [], []
    for row in as_rows(rows):
        reason = missing_input(row)
        if reason is None:
            try:
                check_media(row)
            except MediaError as err:
                reason = f"media cannot be read: {err}"
        if reason is None:
            kept.append(row)
        else:
            logger.warning("skipping sample %s: %s", row["problem_id"], reason)
            skipped.append(SkippedSample(problem_id=str(row["problem_id"]), reason=reason))
    if skipped:
        logger.warning(
            "skipped %d of %d samples: %s",
            len(skipped),
            len(skipped) + len(kept),
            ", ".join(s.problem_id for s in skipped),
        )
    return kept, skipped


def load_sample(sample_builder: SampleBuilder, row: Mapping[str, Any]) -> TrainingSample:
    """``sample_builder(row)`` during training. The row's media passed :func:`usable_rows`'s check when the
    dataset was built, so a ``MediaError`` now stops the run with a ``RuntimeError`` naming the sample and what
    to do (a ``RuntimeError``, unlike a ``MediaError``, reaches the training process from a DataLoader worker
    with its message intact)."""
    try:
        return sample_builder(row)
    except MediaError as err:
        raise RuntimeError(
            f"sample {row['problem_id']} passed the media check when the dataset was built but cannot be loaded "
            f"now ({err}); quarantine it (remove it from the training rows) and resume"
        ) from err


def write_skipped(out_dir: Path, skipped: list[SkippedSample]) -> Path:
    """``out_dir/skipped_samples.json``: the skipped ids and reasons (an empty list when none)."""
    path = Path(out_dir) / SKIPPED_FILE
    write_json(path, [asdict(s) for s in skipped])
    return path


# How long a run goes and how often it saves or logs: extending a run resumes it, not restarts it. Where the media
# are decoded (dataloader_num_workers) changes no weight either.
_BUDGET_FIELDS = frozenset(
    {
        "max_steps",
        "num_train_epochs",
        "save_steps",
        "save_total_limit",
        "logging_steps",
        "dataloader_num_workers",
    }
)


def run_fingerprint(config: Any, model_path: str | Path, problem_ids: Iterable[str]) -> str:
    """What a run's checkpoints depend on: its config (less its step budget), its initial weights
    (:func:`weights_stamp`) and its rows."""
    payload = {
        "config": config.model_dump(mode="json", exclude=set(_BUDGET_FIELDS)),
        "model": weights_stamp(model_path),
        "rows": sorted(problem_ids),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _forget_other_runs(out_dir: Path, fingerprint: str, label: str) -> None:
    """Remove checkpoints (and the final model) that a run with other settings left in ``out_dir``.

    Resuming them would continue another run (or fail on other shapes): changing a profile's
    training settings and materializing again must start over, as DVC would.
    """
    stamp = out_dir / FINGERPRINT_FILE
    previous = stamp.read_text() if stamp.is_file() else None
    stale = [p for p in out_dir.glob("checkpoint-*") if p.is_dir()] + [out_dir / FINAL_MODEL_DIR]
    stale = [p for p in stale if p.exists()]
    if previous != fingerprint and stale:
        logger.warning("%s: %s holds a run with other settings; starting over", label, out_dir)
        for path in stale:
            shutil.rmtree(path)


def training_log(out_dir: Path, key: str) -> tuple[int, pl.DataFrame]:
    """A finished run's last step and its logged steps that carry ``key`` (``loss``, ``reward``), from
    the trainer state :func:`train_and_save` wrote: what a training stage shows."""
    history = json.loads((out_dir / STATE_FILE).read_text())["log_history"]
    return (int(history[-1]["step"]) if history else 0), pl.DataFrame(
        [entry for entry in history if key in entry]
    )


def _finished_step(out_dir: Path, max_steps: int) -> int | None:
    """``max_steps`` (> 0) if a run of this fingerprint finished exactly there (its final state file says so)."""
    state = out_dir / STATE_FILE
    if max_steps <= 0 or not state.is_file():
        return None
    step = int(json.loads(state.read_text()).get("global_step", 0))
    return step if step == max_steps else None


class RunFile(BaseModel):
    """A training run as a file (``run.yaml``): what ``python -m marc_ops.train.<trainer> --config`` reads.

    The file names its folders relative to ``project_dir`` (``.``: the folder ``accelerate launch`` starts in,
    the project), so clones in different folders write the same bytes; :meth:`resolved` makes every path
    absolute before a run opens anything. The rows' ``media_path`` resolve against the same folder.
    """

    project_dir: Path = Field(
        default=Path("."), description="the folder the run's relative paths resolve against (the project)"
    )

    def path_fields(self) -> list[str]:
        return [name for name, value in self if isinstance(value, Path) and name != "project_dir"]

    def resolved(self) -> RunFile:
        """This run with ``project_dir`` and every relative path (and a model folder inside it) absolute."""
        root = self.project_dir.resolve()
        update: dict[str, Any] = {"project_dir": root}
        for name in self.path_fields():
            update[name] = root / getattr(self, name)  # an absolute path stays as it is
        model_path = getattr(self, "model_path", None)
        if model_path is not None and (root / model_path).exists():
            update["model_path"] = str(root / model_path)
        return self.model_copy(update=update)

    def rows(self, path: Path) -> pl.DataFrame:
        """The parquet table at ``path`` with its media paths resolved against the project."""
        return absolute_media(pl.read_parquet(path), self.project_dir.resolve())

    def write(self, path: Path) -> None:
        """``run.yaml``: every folder inside ``project_dir`` relative to it, ``project_dir`` itself ``.``."""
        root = self.project_dir
        payload = json.loads(self.model_dump_json())
        payload["project_dir"] = "."
        for name in self.path_fields():
            payload[name] = project_relative(getattr(self, name), root)
        model_path = getattr(self, "model_path", None)
        if model_path is not None and Path(model_path).is_absolute():
            payload["model_path"] = project_relative(model_path, root)
        write_text(path, yaml.safe_dump(payload, sort_keys=False))


# Keys of the trainers' logs that time the run (wall seconds, rates): measured, not computed. They stay in the
# TensorBoard events (runs/) and out of trainer_state.json, whose hash DVC records (docs/auditing.md).
TIMING_LOG_KEYS = ("_runtime", "_per_second", "step_time")


def logged_loss_sum(log_history: list[dict[str, Any]]) -> tuple[float, int]:
    """The summed step losses of a run from its logged steps, and the last logged step: each logged ``loss`` is
    the mean over the steps since the previous log, so it counts that many times. Summed in the Trainer's
    order, it is the Trainer's own running sum to the bit when every step is logged (``logging_steps: 1``)."""
    total, last_step = 0.0, 0
    for entry in log_history:
        if "loss" in entry:
            total += entry["loss"] * (entry["step"] - last_step)
            last_step = entry["step"]
    return total, last_step


class RunWideTrainLoss(TrainerCallback):
    """Make a resumed run end with the ``train_loss`` of the whole run, as an uninterrupted one does.

    The Trainer's end-of-training ``train_loss`` (kept in ``trainer_state.json``) averages the steps *this call*
    trained: a run resumed at step k would report the mean of steps k+1..N. When training starts from a
    checkpoint, this seeds the Trainer's running loss sum with the steps the checkpoint logged
    (:func:`logged_loss_sum`) and counts the run's steps from 0.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step == 0:
            return
        self.trainer._total_loss_scalar, _ = logged_loss_sum(state.log_history)
        self.trainer._initial_global_step = 0


class CheckpointWeightsMixin:
    """Resume a Trainer with the checkpoint's weights, for Qwen2.5-VL, and end it as an uninterrupted run ends.

    transformers 5's ``Trainer._load_from_checkpoint`` reads ``model.safetensors`` and calls
    ``model.load_state_dict(state_dict, strict=False)``; the file is written in the checkpoint layout
    (``model.layers.*``, ``visual.*``), the model's modules are named ``model.language_model.*`` and
    ``model.visual.*``, so not one tensor loads and the run silently continues from its *initial* weights
    (with the checkpoint's optimizer state and step). This loads the checkpoint as ``from_pretrained``
    does (its key mapping) and copies every tensor, failing if one is missing. DeepSpeed and FSDP resume
    through their own files and are left to the Trainer. A resumed run's final ``train_loss`` covers the
    whole run (:class:`RunWideTrainLoss`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_callback(RunWideTrainLoss(self))  # type: ignore[attr-defined]

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's log, with the run's timings kept out of ``trainer_state.json`` (TIMING_LOG_KEYS)."""
        super().log(logs, *args, **kwargs)  # type: ignore[misc]
        history = self.state.log_history  # type: ignore[attr-defined]
        if history:
            entry = history[-1]
            for key in [k for k in entry if k.endswith(TIMING_LOG_KEYS)]:
                del entry[key]

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        target = self.model if model is None else model  # type: ignore[attr-defined]
        if getattr(self, "is_deepspeed_enabled", False) or getattr(self, "is_fsdp_enabled", False):
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]
            return
        safetensors_weights(resume_from_checkpoint)
        saved = type(target).from_pretrained(
            resume_from_checkpoint, dtype=next(target.parameters()).dtype, use_safetensors=True
        )
        state = saved.state_dict()
        missing = [name for name in target.state_dict() if name not in state]
        if missing:
            raise RuntimeError(
                f"checkpoint {resume_from_checkpoint} lacks {len(missing)} of the model's tensors "
                f"(first: {missing[:3]}); delete it to start over"
            )
        target.load_state_dict(state, strict=False)
        logger.info("resumed the weights of %s", resume_from_checkpoint)


def _checkpoints(out_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders of ``out_dir``, by step."""
    found = [
        p for p in out_dir.glob("checkpoint-*") if p.is_dir() and p.name.removeprefix("checkpoint-").isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")))


def _saved_whole(checkpoint: Path) -> bool:
    """Whether the Trainer finished saving ``checkpoint``: it writes the weights, optimizer, scheduler and RNG
    state first and ``trainer_state.json`` last, so a state file that parses means the rest is there."""
    try:
        json.loads((checkpoint / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return True


def _remove_torn_checkpoints(out_dir: Path, label: str) -> None:
    """Remove the newest checkpoints that a killed run left half-saved.

    The Trainer writes a checkpoint in place; a run killed while saving leaves ``checkpoint-N`` without its
    state file (or with it cut short), and resuming it fails, or worse, continues with the weights but a
    fresh optimizer. The run resumes from the newest checkpoint saved whole instead.
    """
    for checkpoint in reversed(_checkpoints(out_dir)):
        if _saved_whole(checkpoint):
            return
        logger.warning("%s: %s was cut short while saving; resuming from the one before", label, checkpoint)
        shutil.rmtree(checkpoint)


def _finish_from(trainer: Any, checkpoint: Path, label: str) -> None:
    """End a run that was killed after it saved its last step, before its final model: take the checkpoint's
    weights and state and log the end of training as the Trainer does. Resuming it instead would train one
    step past ``max_steps`` (the Trainer's epoch arithmetic) and end with other weights."""
    logger.info("%s trained its last step (%s): finishing from it", label, checkpoint)
    trainer._load_from_checkpoint(str(checkpoint))
    trainer.state = TrainerState.load_from_json(str(checkpoint / STATE_FILE))
    total, steps = logged_loss_sum(trainer.state.log_history)
    trainer.log({"total_flos": trainer.state.total_flos, "train_loss": total / max(steps, 1)})


def _drop_checkpoint(trainer: Any, checkpoint: Path, label: str) -> Path | None:
    """Remove ``checkpoint`` and return the one before it, if any."""
    if trainer.accelerator.is_main_process:
        logger.warning("%s: training the step of %s again, from the checkpoint before it", label, checkpoint)
        shutil.rmtree(checkpoint)
    trainer.accelerator.wait_for_everyone()
    found = get_last_checkpoint(str(checkpoint.parent))
    return None if found is None else Path(found)


def train_and_save(
    trainer: Any, out_dir: Path, skipped: list[SkippedSample], *, label: str, fingerprint: str | None = None
) -> Path:
    """Run ``trainer`` to the end, resuming from the last ``checkpoint-N`` in ``out_dir`` if there is
    one; save the final model to ``out_dir/model`` and the trainer state; record the skipped samples.

    With a ``fingerprint`` (:func:`run_fingerprint`), checkpoints of a run with another fingerprint
    are removed first instead of resumed; checkpoints a killed run left half-saved are removed too.
    Shared by C-GRPO and SFT: both are TRL trainers that resume and finish the same way.
    """
    if trainer.accelerator.is_main_process:
        write_skipped(out_dir, skipped)
        if fingerprint is not None:
            _forget_other_runs(out_dir, fingerprint, label)
            write_text(out_dir / FINGERPRINT_FILE, fingerprint)
        _remove_torn_checkpoints(out_dir, label)
    trainer.accelerator.wait_for_everyone()
    final = out_dir / FINAL_MODEL_DIR
    done = _finished_step(out_dir, trainer.args.max_steps)
    if done is not None and (final / "config.json").is_file():
        # Resuming a finished run would train one step past max_steps (the Trainer's epoch arithmetic).
        logger.info("%s finished at step %d: nothing left to train", label, done)
        return final
    found = get_last_checkpoint(str(out_dir)) if out_dir.is_dir() else None
    last = None if found is None else Path(found)
    trained_last_step = last is not None and _finished_step(last, trainer.args.max_steps) is not None
    if trained_last_step and not (trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled):
        _finish_from(trainer, last, label)
    else:
        if trained_last_step:
            # DeepSpeed and FSDP load a checkpoint's weights only inside train(), which would train a step past
            # max_steps from it: the last step is trained again from the checkpoint before it.
            last = _drop_checkpoint(trainer, last, label)
        if last is not None:
            logger.info("resuming %s from %s", label, last)
        trainer.train(resume_from_checkpoint=None if last is None else str(last))
    trainer.save_model(str(final))
    if trainer.accelerator.is_main_process:
        # Renamed into place: a run killed while writing it must not leave a state file that does not parse.
        with atomic_path(out_dir / STATE_FILE) as written:
            trainer.state.save_to_json(str(written))
    return final
