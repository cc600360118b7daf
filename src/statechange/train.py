"""Self-supervised multi-task training (METHOD.md): ``train(config, paths)`` reads top to bottom.

Every step, for each video of the batch (category c, T frames):
  1. a no-grad pass over all T frames, in chunks, with the current model -> P_s1, P_s2, P_a;
  2. the causal-ordering decode (s1, a, s2) with D = 500;
  3. 15 frames around s1, a, s2, a - kappa, a + kappa and their pseudo-labels (``targets``);
then one forward/backward pass over the batch's 15-frame sets with the noise-adaptive video weights.

A frozen backbone without augmentation never changes a frame's features, so in that case every
video's features are computed once (``features.FeatureStore``) and steps 1-3 run on the heads only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from statechange import distributed
from statechange._io import remove_path, replaced_path, write_text
from statechange.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from statechange.config import COLLECTIVE_TIMEOUT_MINUTES, ForwardSettings, TrainConfig, to_dict
from statechange.data.augment import VideoAugmentation, sample_augmentation
from statechange.data.cache import FrameCache, frame_source, load_frames
from statechange.data.decode import VideoDecodeError
from statechange.data.index import DatasetIndex, IndexedVideo, build_index
from statechange.download import find_cached_weights
from statechange.errors import StateChangeError
from statechange.evaluate import EvaluationResult, evaluate
from statechange.factory import build_model
from statechange.features import FeatureStore, backbone_fingerprint, compute_features
from statechange.inference import autocast, prepare_frames, video_logits
from statechange.labels import category_probabilities
from statechange.model import StateChangeModel, init_model
from statechange.ordering import best_triplet
from statechange.preemption import StopRequest
from statechange.progress import progress, write
from statechange.recipes import describe_recipe
from statechange.release import initial_weights
from statechange.reporting import (
    DEFAULT_LOG_EVERY_STEPS,
    DEFAULT_WANDB_PROJECT,
    TENSORBOARD,
    WANDB,
    WANDB_DIR,
    WANDB_ID_FILE,
    TensorBoardReporter,
    WandbReporter,
    check_report_to,
)
from statechange.selection import (
    SELECTION_METRIC,
    HeldOut,
    check_same_validation,
    check_validation_options,
    held_out_split,
    selection_metadata,
)
from statechange.targets import PseudoLabels, concatenate_labels, pseudo_labels

LOG_FILE = "log.jsonl"
STEPS_LOG_FILE = "steps.jsonl"  # every log_every_steps optimiser steps: losses and learning rates
TENSORBOARD_DIR = "tensorboard"
LAST, BEST = "last", "best"
RESUMABLE_SETTINGS = frozenset({"optim.n_epochs"})  # a resumed run may extend or shorten its schedule


@dataclass(frozen=True)
class TrainPaths:
    video_roots: tuple[Path, ...]
    dataset_root: Path | None
    output: Path
    frame_cache: Path | None = None  # from `statechange extract`; None: decode on the fly
    feature_cache: Path | None = None  # default: <output>/features
    backbone_weights: Path | None = None  # --clip-weights: pretrained backbone weights
    init_from: Path | None = None  # --init-from: a whole model (release .pth or checkpoint) to start from
    val_annotations: Path | None = None  # --val-annotations: a held-out validation set that chooses best


@dataclass(frozen=True)
class TrainOptions:
    device: str | None = None
    resume: bool = False
    num_workers: int = 2  # data-loading processes per rank
    chunk_size: int = ForwardSettings.chunk_size  # frames per no-grad forward pass (memory knob only)
    progress: bool = True
    evaluate_every: int = 1  # epochs
    stop_after_epoch: int | None = None  # end this run early (e.g. a cluster's time limit); --resume continues
    overwrite: bool = False  # replace a run already in the output folder (else it is refused without --resume)
    log_every_steps: int = DEFAULT_LOG_EVERY_STEPS  # optimiser steps between steps.jsonl/TensorBoard/W&B records
    report_to: tuple[str, ...] = (TENSORBOARD,)  # besides the console and log.jsonl: tensorboard, wandb
    wandb_project: str = DEFAULT_WANDB_PROJECT
    val_fraction: float | None = None  # this seeded share of the annotated videos chooses best, not reported as test
    save_every_steps: int | None = None  # also save a resumable `last` every N optimiser steps (mid-epoch)
    collective_timeout_minutes: float = COLLECTIVE_TIMEOUT_MINUTES  # a stalled rank fails the others after it


@dataclass
class TrainResult:
    model: StateChangeModel
    categories: list[str]
    summary: dict[str, Any]  # the last validation's metrics summary (empty without annotated videos)
    epochs_run: list[int]
    stopped_by: str | None = None  # the signal that stopped the run early (`last` saved), None when it ran out


@dataclass
class _Item:
    """One training video as the data loader delivers it."""

    position: int  # index into the training list
    frames: np.ndarray | None = None  # uint8 [T, H, W, 3], frame mode
    features: torch.Tensor | None = None  # float32 [T, F], feature mode
    error: str | None = None

    @property
    def n_frames(self) -> int:
        return len(self.frames) if self.frames is not None else len(self.features)


class _TrainingVideos(Dataset):
    """Training videos as frames (from the frame cache or decoded) or as stored features."""

    def __init__(self, videos: list[IndexedVideo], config: TrainConfig, frame_cache: FrameCache | None,
                 feature_store: FeatureStore | None) -> None:
        self.videos, self.config, self.frame_cache, self.feature_store = videos, config, frame_cache, feature_store

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, position: int) -> _Item:
        video = self.videos[position]
        if self.feature_store is not None:
            features = self.feature_store.get(video.video, _frame_source(video, self.frame_cache, self.config))
            if features is None:
                return _Item(position, error="its features could not be computed (see the feature pass above)")
            return _Item(position, features=features)
        frames_config = self.config.frames
        try:
            frames = load_frames(video.video, self.frame_cache, fps=frames_config.fps,
                                 size=frames_config.size)
        except VideoDecodeError as error:
            return _Item(position, error=error.reason)
        return _Item(position, frames=frames)


class _TrainStep(torch.nn.Module):
    """What DDP wraps: the model on frames, or its heads alone on stored features."""

    def __init__(self, model: StateChangeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, from_features: bool,
                own_rows: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Each ensemble member's logits: state [M, K, 2N+1], action [M, K, N+1] (K = 1 without one); with
        ``own_rows``, features [G, K, R, F] and each member's logits on its own rows: [G, K, R, .]."""
        if own_rows:
            return self.model.own_member_heads(inputs)
        return self.model.member_heads(inputs) if from_features else self.model.member_logits(inputs)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up from 0, then half a cosine down to 0 at ``total_steps``."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def augmentation_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of one video's augmentation in one epoch: independent of ranks, workers and resumes."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


def train(config: TrainConfig, paths: TrainPaths, options: TrainOptions = TrainOptions()) -> TrainResult:
    """Train a model, writing checkpoints and logs to ``paths.output``."""
    check_settings(config, options)
    check_validation_options(paths.val_annotations, options.val_fraction)
    context = distributed.setup(options.device, options.collective_timeout_minutes)
    try:
        with distributed.collective_failures_explained(context, options.collective_timeout_minutes):
            return _train(config, paths, options, context)
    finally:
        distributed.cleanup()


def check_settings(config: TrainConfig, options: TrainOptions) -> None:
    """Refuse, in one sentence naming the option, settings that cannot train (before any work starts)."""
    optim, labels = config.optim, config.pseudo_labels
    at_least_one = {"--n-epochs": optim.n_epochs, "--local-batch-size": optim.local_batch_size,
                    "--n-frames-per-gt": labels.n_frames_per_target, "--max-distance": labels.max_distance,
                    "--kappa": labels.kappa, "--chunk-size": options.chunk_size,
                    "--hidden-sizes": min(config.model.hidden_sizes, default=1),
                    "--ensemble-size": config.model.ensemble_size}
    if options.save_every_steps is not None:
        at_least_one["--save-every-steps"] = options.save_every_steps
    timeout = options.collective_timeout_minutes
    if not (timeout > 0 and math.isfinite(timeout)):
        raise StateChangeError(f"--collective-timeout must be a positive number of minutes, got {timeout}: e.g. "
                               f"the default {COLLECTIVE_TIMEOUT_MINUTES:g}.")
    at_least_one["--log-every-steps"] = options.log_every_steps
    not_negative = {"--workers": options.num_workers, "--warmup-epochs": optim.warmup_epochs,
                    "--weight-decay": optim.weight_decay, "--weight-decay-backbone": optim.weight_decay_backbone}
    learning_rates = {"--lr": optim.lr, "--lr-backbone": optim.lr_backbone}  # 0 is allowed: nothing moves
    check_report_to(options.report_to)
    for option, value in at_least_one.items():
        if value < 1:
            raise StateChangeError(f"{option} must be at least 1, got {value}: see statechange train --help.")
    for option, value in not_negative.items():
        if not value >= 0:  # NaN too
            raise StateChangeError(f"{option} must not be negative, got {value}: see statechange train --help.")
    for option, value in learning_rates.items():
        if not (value >= 0 and math.isfinite(value)):
            raise StateChangeError(f"{option} must be a finite number, not negative, got {value}: e.g. the default "
                                   f"{getattr(type(optim)(), option.removeprefix('--').replace('-', '_'))}.")


def _train(config: TrainConfig, paths: TrainPaths, options: TrainOptions,
           context: distributed.DistributedContext) -> TrainResult:
    run = _set_up(config, paths, options, context)
    summary: dict[str, Any] = {}
    epochs_run = []
    record: dict[str, Any] | None = None
    stopped_by = None  # set when a stop request ended the run before its last epoch
    with _stop_request(run) as stop:
        for epoch in range(run.start_epoch, run.last_epoch + 1):
            epochs_run.append(epoch)
            record = _train_one_epoch(run, epoch, stop)
            if record is None:  # stopped on request after an optimiser step; `last` holds the position
                stopped_by = stop.received or "SIGTERM on another rank"
                break
            due = epoch % options.evaluate_every == 0 or epoch == config.optim.n_epochs
            if (run.test_videos or run.held_out) and due:
                summary = _validate(run, record)
            _save_checkpoints(run, record)  # then the log: a kill in between leaves the record in the checkpoint
            run.log.epoch(record)
            distributed.barrier()
            if epoch < run.last_epoch and stop.agreed():
                _log_stop(run, stop, f"after epoch {epoch}")
                stopped_by = stop.received or "SIGTERM on another rank"
                break
    if record is not None and record["epoch"] == config.optim.n_epochs:
        run.log.finish(to_dict(config), record.get("metrics") or {})
    if stopped_by is None:  # (a stop has said where it stopped)
        run.log.print(_final_line(run, record))
    run.log.close()
    return TrainResult(run.model, run.index.categories, summary, epochs_run, stopped_by)


# ----------------------------------------------------------------------------------------------
# set-up: data, model, optimisation, features, loader


class Optimisation:
    """The optimisers and their learning-rate schedules, owned together: built, stepped, saved and restored.

    Heads: SGD (lr 1e-4, momentum 0.9, weight decay 1e-3); backbone, when fine-tuned: AdamW (lr 1e-5). Both
    follow a linear warm-up then cosine decay over the whole run, one schedule step per optimiser step.
    """

    def __init__(self, model: StateChangeModel, config: TrainConfig, steps_per_epoch: int) -> None:
        optim = config.optim
        head_parameters = [*model.state_head.parameters(), *model.action_head.parameters()]
        self.optimizers: list[torch.optim.Optimizer] = [torch.optim.SGD(
            head_parameters, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)]
        if optim.train_backbone:
            self.optimizers.append(torch.optim.AdamW(model.backbone.parameters(), lr=optim.lr_backbone,
                                                     weight_decay=optim.weight_decay_backbone))
        warmup_steps = round(optim.warmup_epochs * steps_per_epoch)
        total_steps = optim.n_epochs * steps_per_epoch
        self.schedulers = [
            torch.optim.lr_scheduler.LambdaLR(o, lambda s: warmup_cosine(s, warmup_steps, total_steps))
            for o in self.optimizers
        ]

    def zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One optimiser step, then one schedule step, for the heads and (if trained) the backbone."""
        for optimizer in self.optimizers:
            optimizer.step()
        for scheduler in self.schedulers:
            scheduler.step()

    def learning_rates(self) -> dict[str, float | None]:
        """The learning rates the next step will use: heads, and backbone (None when it is frozen)."""
        rates = [scheduler.get_last_lr()[0] for scheduler in self.schedulers]
        return {"lr": rates[0], "lr_backbone": rates[1] if len(rates) > 1 else None}

    def state_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {"optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict[str, list[dict[str, Any]]]) -> None:
        for optimizer, optimizer_state in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(optimizer_state)
        for scheduler, scheduler_state in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(scheduler_state)


@dataclass
class _Run:
    """Everything one training run holds between its steps."""

    config: TrainConfig
    paths: TrainPaths
    options: TrainOptions
    context: distributed.DistributedContext
    forward: ForwardSettings
    log: _Logger
    index: DatasetIndex
    train_videos: list[IndexedVideo]
    test_videos: list[IndexedVideo]
    video_weights: torch.Tensor  # [V] noise-adaptive weight of each training video
    frame_cache: FrameCache | None
    model: StateChangeModel
    optimisation: Optimisation
    use_features: bool  # frozen backbone and no augmentation: the heads train on stored features
    feature_store: FeatureStore | None
    step_module: torch.nn.Module  # _TrainStep, wrapped in DDP when distributed
    sampler: _ResumableSampler
    loader: DataLoader
    steps_per_epoch: int  # optimiser steps, each of accumulate_steps micro-batches per process
    start_epoch: int
    last_epoch: int
    best_precision: float
    skipped_undecodable: set[str]  # keys of the videos this process has skipped so far
    held_out: HeldOut | None = None  # the validation set that chooses best; None: no best is kept
    resume_progress: dict[str, Any] | None = None  # where a mid-epoch `last` stopped (the epoch to finish first)


def _set_up(config: TrainConfig, paths: TrainPaths, options: TrainOptions,
            context: distributed.DistributedContext) -> _Run:
    """Data, model, optimisation (restored with --resume), stored features and the loader of a run."""
    device = context.device
    forward = ForwardSettings(str(device), config.precision, options.chunk_size, config.frames.crop)
    _claim_output(paths.output, options, context)
    log = _Logger(paths.output, enabled=context.is_main, rank=context.rank, options=options,
                  settings=to_dict(config))
    torch.manual_seed(config.seed)

    index = build_index(paths.video_roots, paths.dataset_root, config.loss.ignore_video_weight)
    log.print(index.report.format())
    train_videos, test_videos, held_out = held_out_split(index, paths.val_annotations, options.val_fraction,
                                                         config.seed)
    batch_size, world_size = config.optim.local_batch_size, context.world_size
    accumulate = config.optim.accumulate_steps
    steps_per_epoch = len(train_videos) // (batch_size * world_size * accumulate)  # optimiser steps
    if steps_per_epoch == 0:
        raise StateChangeError(
            f"{len(train_videos)} training videos cannot fill one step of {batch_size} videos x {world_size} "
            f"processes x {accumulate} accumulated batches: add videos or lower --local-batch-size or "
            "--accumulate-steps."
        )
    video_weights = torch.tensor([index.weight_of(v, config.loss.relevance_temperature) for v in train_videos])
    frame_cache = FrameCache(paths.frame_cache) if paths.frame_cache is not None else None

    weights_file = paths.backbone_weights
    if weights_file is None and paths.init_from is None:
        weights_file = find_cached_weights(config.model.backbone)
        if weights_file is not None:
            log.print(f"Backbone weights: {weights_file} (found in the download cache; --clip-weights to use others)")
    model = _initial_model(config, paths, weights_file, index.categories).to(device)
    model.backbone.requires_grad_(config.optim.train_backbone)
    use_features = not config.optim.train_backbone and not config.augment.enabled
    optimisation = Optimisation(model, config, steps_per_epoch)
    start_epoch, best_precision, resume_progress = 1, -math.inf, None
    if options.resume:
        start_epoch, best_precision, resume_progress = _resume(paths.output / LAST, model, optimisation,
                                                               config, index, context, log, held_out)

    feature_store = None
    if use_features:  # features once, when the backbone is frozen and frames are not augmented
        fingerprint = backbone_fingerprint(model.backbone, config.model.backbone, config.frames, forward.precision,
                                           device.type)
        feature_store = FeatureStore(paths.feature_cache or paths.output / "features", fingerprint)
        validation = held_out.videos if held_out is not None else []
        _compute_features(model, [*train_videos, *test_videos, *validation], feature_store, frame_cache, config,
                          forward, context, log, options.progress)

    step_module: torch.nn.Module = _TrainStep(model)
    if context.is_distributed:
        step_module = torch.nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    dataset = _TrainingVideos(train_videos, config, frame_cache, feature_store)
    sampler = _ResumableSampler(dataset, num_replicas=world_size, rank=context.rank, shuffle=True,
                                seed=config.seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                        num_workers=options.num_workers, collate_fn=list,
                        persistent_workers=False, pin_memory=device.type == "cuda")
    log.print(describe_recipe(config.recipe, config.optim.lr, config.model.ensemble_size))
    log.print(f"training on {len(train_videos)} videos, {len(index.categories)} categories, {world_size} "
              f"process(es) x {batch_size} videos x {accumulate} accumulated = {world_size * batch_size * accumulate} "
              f"videos per step, {steps_per_epoch} steps per epoch, "
              f"{'stored backbone features' if use_features else 'frames'}, device {device}")
    last_epoch = config.optim.n_epochs if options.stop_after_epoch is None else min(
        config.optim.n_epochs, options.stop_after_epoch)
    return _Run(config, paths, options, context, forward, log, index, train_videos, test_videos, video_weights,
                frame_cache, model, optimisation, use_features, feature_store, step_module, sampler,
                loader, steps_per_epoch, start_epoch, last_epoch, best_precision, set(), held_out,
                resume_progress)


def _initial_model(config: TrainConfig, paths: TrainPaths, weights_file: Path | None,
                   categories: list[str]) -> StateChangeModel:
    """The model a run starts from: pretrained backbone and random heads, or a whole model (--init-from)."""
    if paths.init_from is None:
        return build_model(config.model, len(categories), weights=weights_file, seed=config.seed)
    if paths.backbone_weights is not None:
        raise StateChangeError("--init-from already holds the backbone's weights; leave out --clip-weights.")
    model = init_model(config.model, len(categories), seed=config.seed)
    model.load_state_dict(initial_weights(paths.init_from, config.model, categories))
    return model


# ----------------------------------------------------------------------------------------------
# one epoch, validation, checkpoints


@dataclass
class _EpochTotals:
    """Running sums over an epoch's optimiser steps (every rank holds the same numbers)."""

    loss: float = 0.0
    state_loss: float = 0.0
    action_loss: float = 0.0
    grad_norm: float = 0.0
    steps: int = 0

    def add(self, step: _StepLosses) -> None:
        self.loss += step.loss
        self.state_loss += step.state_loss
        self.action_loss += step.action_loss
        self.grad_norm += step.grad_norm
        self.steps += 1

    def means(self) -> dict[str, float]:
        steps = max(1, self.steps)
        return {"loss": self.loss / steps, "state_loss": self.state_loss / steps,
                "action_loss": self.action_loss / steps, "grad_norm": self.grad_norm / steps}


def _train_one_epoch(run: _Run, epoch: int, stop: StopRequest) -> dict[str, Any] | None:
    """One pass over the training videos (the rest of it after a mid-epoch `last`); returns the epoch's record
    for the log, or None when the run was asked to stop (after an optimiser step; `last` then holds the position)."""
    config, log = run.config, run.log
    run.sampler.set_epoch(epoch)
    _set_mode(run.model, True, config.optim.train_backbone)
    position = _start_epoch(run, epoch)  # before the loader's iterator: it sets where the sampler starts
    micro_batches = iter(run.loader)  # (draws the loader's seed from torch's RNG)
    _continue_epoch(run, position)  # the RNG states of a mid-epoch `last`, restored after that draw
    totals = position.totals
    started = time.time() - position.seconds
    batches = progress(micro_batches, total=len(run.loader), desc=f"epoch {epoch}/{config.optim.n_epochs}",
                       unit="step", enabled=run.context.is_main and run.options.progress, leave=False)
    accumulate = config.optim.accumulate_steps
    group: list[_MicroBatchLosses] = []  # the micro-batches of the optimiser step being accumulated
    for micro_step, batch in enumerate(batches, start=position.step * accumulate):  # counted from the epoch start
        if micro_step == run.steps_per_epoch * accumulate:
            break  # a last group of fewer than accumulate_steps micro-batches is dropped, like a partial batch
        prepared = []
        for item in batch:
            video = run.train_videos[item.position]
            if item.error is not None:
                if video.key not in run.skipped_undecodable:
                    run.skipped_undecodable.add(video.key)
                    log.warn(f"skipping {video.path}: {item.error}")
                continue
            if item.n_frames < 3:
                position.too_short += 1
                continue
            augmentation = _augmentation(config, epoch, item.position) if not run.use_features else None
            try:
                prepared.append(_pseudo_labelled_inputs(run.model, item, video, augmentation,
                                                        len(run.index.categories), config, run.forward))
            except _NonFiniteError:
                _diverged(epoch, run.paths.output)
        if not group:
            run.optimisation.zero_grad()
        group.append(_backward(run, prepared, last_of_step=len(group) == accumulate - 1))
        if len(group) < accumulate:
            continue
        losses = _optimiser_step(run, group)
        group = []
        if not math.isfinite(losses.loss):
            _diverged(epoch, run.paths.output)
        position.step += 1  # a step slot, taken or not: the same count on every rank
        if losses.n_videos > 0:  # else every video of the step was skipped on every rank: no step was taken
            totals.add(losses)
            batches.set_postfix(loss=f"{losses.loss:.3f}")
            step = position.run_step(run.steps_per_epoch)
            if step % run.options.log_every_steps == 0:
                _log_step(run, epoch, step, losses)
        position.seconds = time.time() - started
        if _at_safe_point(run, position, stop):
            return None

    device = run.context.device
    too_short_all = distributed.all_reduce_sum(torch.tensor([position.too_short], dtype=torch.float64,
                                                            device=device))
    return {
        "epoch": epoch,
        **totals.means(),
        **run.optimisation.learning_rates(),
        "skipped_undecodable": len(run.skipped_undecodable),  # seen so far by this (the main) process
        "skipped_too_short": int(too_short_all.item()),
        "seconds": round(time.time() - started, 2),
        "step": epoch * run.steps_per_epoch,  # the run's optimiser steps at the end of the epoch
    }


def _log_step(run: _Run, epoch: int, step: int, losses: _StepLosses) -> None:
    rates = {k: v for k, v in run.optimisation.learning_rates().items() if v is not None}
    run.log.step(epoch, step, {"loss": losses.loss, "state_loss": losses.state_loss,
                               "action_loss": losses.action_loss, "grad_norm": losses.grad_norm, **rates})


def _validate(run: _Run, record: dict[str, Any]) -> dict[str, Any]:
    """Evaluate on the test videos (and the held-out validation set); adds the metrics to ``record`` and
    returns the test summary."""
    summary: dict[str, Any] = {}
    if run.test_videos:
        result = _evaluate_videos(run, run.test_videos)
        summary = result.metrics.summary()
        record["metrics"] = {k: v for k, v in summary.items() if k != "per_category"}
        record["per_category"] = summary["per_category"]
        record["validation_failed"] = len(result.failed)
        if result.length_mismatches:  # scored on the shorter length; the log keeps its keys otherwise
            record["length_mismatches"] = len(result.length_mismatches)
        run.log.print(result.metrics.format_table())
    if run.held_out is not None:
        held_out = _evaluate_videos(run, run.held_out.videos).metrics.summary()
        record["val_metrics"] = {k: v for k, v in held_out.items() if k != "per_category"}
        run.log.print(f"validation ({run.held_out.description}): {SELECTION_METRIC} "
                      f"{record['val_metrics'][SELECTION_METRIC]:.4f}")
    return summary


def _evaluate_videos(run: _Run, videos: list[IndexedVideo]) -> EvaluationResult:
    """Evaluation during training scores length mismatches on the shorter length and counts them."""
    return evaluate(run.model, videos, run.forward, run.config.frames, run.frame_cache, run.feature_store,
                    progress=run.context.is_main and run.options.progress, allow_length_mismatch=True)


def _save_checkpoints(run: _Run, record: dict[str, Any]) -> None:
    """``last`` after every epoch; ``best`` when state precision on the held-out validation set improved
    (only runs given one keep a best; main process only)."""
    ranks = distributed.all_gather_objects(_rank_state(run, too_short=0))
    if not run.context.is_main:
        return
    epoch, categories, output = record["epoch"], run.index.categories, run.paths.output
    metadata = {"train_config": to_dict(run.config), "epoch": epoch, "metrics": record.get("metrics")}
    metadata.update(selection_metadata(run.held_out, record.get("val_metrics")))
    precision_now = (record.get("val_metrics") or {}).get(SELECTION_METRIC)
    if precision_now is not None and precision_now > run.best_precision:
        run.best_precision = precision_now
        save_checkpoint(output / BEST, run.model, categories, metadata)
    save_checkpoint(output / LAST, run.model, categories, metadata,
                    _training_state(epoch, record, run.optimisation, run.best_precision, ranks))


# ----------------------------------------------------------------------------------------------
# mid-epoch checkpoints and stopping on SIGTERM


class _ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can begin an epoch part-way: the first ``skip`` of this rank's indices are
    left out (the epoch's permutation itself depends only on the seed and the epoch)."""

    skip = 0  # videos of this rank already trained on in the epoch

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return self.num_samples - self.skip


@dataclass
class _EpochProgress:
    """Where an epoch stands after an optimiser step: what a mid-epoch `last` keeps and --resume restores."""

    epoch: int
    step: int = 0  # optimiser step slots done in this epoch (each accumulate_steps micro-batches per rank)
    totals: _EpochTotals = field(default_factory=_EpochTotals)
    too_short: int = 0  # videos of fewer than 3 frames this rank left out in this epoch
    seconds: float = 0.0  # time spent in this epoch so far
    rng: dict[str, Any] | None = None  # this rank's RNG states to restore once the epoch's loader has started

    def run_step(self, steps_per_epoch: int) -> int:
        """The run's optimiser step slots done so far, counted from 1 over all epochs."""
        return (self.epoch - 1) * steps_per_epoch + self.step


def _start_epoch(run: _Run, epoch: int) -> _EpochProgress:
    """A fresh epoch, or the one a mid-epoch `last` stopped in: its sampler then skips the micro-batches done
    (steps x accumulate_steps x local batch size videos of this rank)."""
    saved, run.resume_progress = run.resume_progress, None
    if saved is None or saved["epoch"] != epoch:
        run.sampler.skip = 0
        return _EpochProgress(epoch)
    optim = run.config.optim
    run.sampler.skip = saved["step"] * optim.accumulate_steps * optim.local_batch_size
    run.skipped_undecodable.update(saved["skipped_undecodable"])
    return _EpochProgress(epoch, saved["step"], _EpochTotals(**saved["totals"]), saved["too_short"],
                          saved["seconds"], saved["rng"])


def _continue_epoch(run: _Run, done: _EpochProgress) -> None:
    """Restore a mid-epoch `last`'s RNG states (after the loader's iterator drew its seed, as it had then)."""
    if done.rng is not None:
        _set_rng_states(done.rng, run.context.device)
        done.rng = None


def _at_safe_point(run: _Run, done: _EpochProgress, stop: StopRequest) -> bool:
    """After an optimiser step: save `last` when --save-every-steps says so or a rank was asked to stop; True
    to stop. Never between the micro-batches of one step, whose gradients only live in memory."""
    stopping = stop.agreed()
    every, steps_per_epoch = run.options.save_every_steps, run.steps_per_epoch
    due = every is not None and done.run_step(steps_per_epoch) % every == 0 and done.step < steps_per_epoch
    # (at an epoch's end the epoch's own save writes last)
    if stopping or due:
        _save_mid_epoch(run, done)
    if stopping:
        _log_stop(run, stop, f"in epoch {done.epoch} after step {done.step} of {steps_per_epoch}")
    return stopping


def _save_mid_epoch(run: _Run, done: _EpochProgress) -> None:
    """`last` with the position in the epoch, every rank's RNG states and the running totals (rank 0 writes)."""
    ranks = distributed.all_gather_objects(_rank_state(run, done.too_short))
    if run.context.is_main:
        position = {"epoch": done.epoch, "step": done.step, "steps_per_epoch": run.steps_per_epoch,
                    "world_size": run.context.world_size, "totals": asdict(done.totals),
                    "seconds": done.seconds}
        metadata = {"train_config": to_dict(run.config), "epoch": done.epoch, "step": done.step,
                    "metrics": None, **selection_metadata(run.held_out, None)}  # (a resume checks the validation set)
        state = _training_state(done.epoch - 1, None, run.optimisation, run.best_precision, ranks)
        save_checkpoint(run.paths.output / LAST, run.model, run.index.categories, metadata,
                        state | {"progress": position})
    distributed.barrier()  # no rank goes on (or stops) before `last` is complete


def _rank_state(run: _Run, too_short: int) -> dict[str, Any]:
    """What differs between ranks: RNG states, the epoch's too-short count, the videos skipped so far."""
    return {"rng": _rng_states(run.context.device), "too_short": too_short,
            "skipped_undecodable": sorted(run.skipped_undecodable)}


def _rng_states(device: torch.device) -> dict[str, Any]:
    """torch (CPU and this rank's GPU), NumPy and Python RNG states as plain data (checkpoints hold no pickles)."""
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()  # noqa: NPY002 - the global one
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gauss": float(cached_gauss)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }


def _set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    """The inverse of ``_rng_states`` (a checkpoint from before per-rank states holds torch's CPU state only)."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    if "numpy" in states:
        numpy_state = states["numpy"]
        keys = numpy_state["keys"].numpy().astype(np.uint32)
        np.random.set_state(  # noqa: NPY002 - the global state, as saved
            ("MT19937", keys, numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gauss"]))
    if "python" in states:
        python_state = states["python"]
        random.setstate((python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss"]))


def _own_rank_state(state: dict[str, Any], context: distributed.DistributedContext) -> dict[str, Any]:
    """This rank's part of a training state; rank 0's when the number of processes changed."""
    ranks = state.get("ranks")
    if ranks is None:  # written before per-rank states: rank 0's torch RNG only
        return {"rng": {"torch": state["torch_rng"]}, "too_short": 0, "skipped_undecodable": []}
    return ranks[context.rank] if len(ranks) == context.world_size else ranks[0]


def _resumed_progress(state: dict[str, Any], directory: Path,
                      context: distributed.DistributedContext) -> dict[str, Any] | None:
    """The position of a mid-epoch `last` (None after a whole epoch); refuses another number of processes, which
    would deal the epoch's videos out differently (the batch settings are checked with the other settings)."""
    progress = state.get("progress")
    if progress is None:
        return None
    if progress["world_size"] != context.world_size:
        raise StateChangeError(
            f"{directory} was saved in the middle of epoch {progress['epoch']} by {progress['world_size']} "
            f"process(es), not {context.world_size}: resume it with {progress['world_size']} process(es) (after "
            "that epoch, any number may continue)."
        )
    return dict(progress)


@contextlib.contextmanager
def _stop_request(run: _Run) -> Iterator[StopRequest]:
    """SIGTERM handling for the epochs; announced once every rank has it in place."""
    with StopRequest(run.context.rank, run.context.world_size, run.context.device) as stop:
        distributed.barrier()
        run.log.print(f"on SIGTERM every process stops after its current step and saves {run.paths.output / LAST}"
                      "; continue with --resume")
        yield stop


def _log_stop(run: _Run, stop: StopRequest, where: str) -> None:
    ranks = ", ".join(str(rank) for rank in stop.stopping_ranks)
    run.log.print(f"stopped {where}: rank(s) {ranks} received SIGTERM; {run.paths.output / LAST} is saved, "
                  "continue with --resume")


# ----------------------------------------------------------------------------------------------
# one step


def _augmentation(config: TrainConfig, epoch: int, position: int) -> VideoAugmentation | None:
    if not config.augment.enabled:
        return None  # the release trains on the centre crop without --augment
    generator = torch.Generator().manual_seed(augmentation_seed(config.seed, epoch, position))
    return sample_augmentation(config.augment, generator, config.frames.size,
                               config.frames.crop)


class _NonFiniteError(Exception):
    """The model produced non-finite outputs (diverged)."""


@dataclass
class _Prepared:
    inputs: torch.Tensor  # [K * 5n, F] features or uint8 [K * 5n, 3, crop, crop] frames, on the device
    labels: PseudoLabels  # K * 5n entries: ensemble member k's 5n frames and targets at rows [k*5n, (k+1)*5n)
    position: int


@torch.no_grad()
def _pseudo_labelled_inputs(model: StateChangeModel, item: _Item, video: IndexedVideo,
                            augmentation: VideoAugmentation | None, n_categories: int, config: TrainConfig,
                            forward: ForwardSettings) -> _Prepared:
    """Steps 1-3: no-grad pass over all frames, ordering decode, the 15 frames and their targets; for an
    ensemble, every member decodes its own predictions and gets its own 15 frames."""
    _set_mode(model, False, config.optim.train_backbone)  # the decode sees the model as evaluation does
    device = torch.device(forward.device)
    if item.features is not None:
        features = item.features.to(device)
        state_logits, action_logits = model.member_heads(features)  # [T, K, 2N+1], [T, K, N+1]
    else:
        state_logits, action_logits = video_logits(model, item.frames, forward, augmentation, members=True)
    _set_mode(model, True, config.optim.train_backbone)
    if not (torch.isfinite(state_logits).all() and torch.isfinite(action_logits).all()):
        raise _NonFiniteError(video.key)
    labels = concatenate_labels([
        _member_pseudo_labels(state_logits[:, member], action_logits[:, member], video, item.n_frames,
                              n_categories, config)
        for member in range(state_logits.shape[1])])
    if item.features is not None:
        inputs = features[labels.frames.to(device)]
    else:
        inputs = prepare_frames(item.frames[labels.frames.numpy()], device, augmentation, config.frames.crop)
    return _Prepared(inputs, labels, item.position)


def _member_pseudo_labels(state_logits: torch.Tensor, action_logits: torch.Tensor, video: IndexedVideo,
                          n_frames: int, n_categories: int, config: TrainConfig) -> PseudoLabels:
    """One member's ordering decode of its logits [T, 2N+1], [T, N+1] and the 5n frames it labels."""
    initial, action, end = category_probabilities(state_logits, action_logits, video.category_index)
    triplet = best_triplet(initial, action, end, max_distance=config.pseudo_labels.max_distance).cpu()
    return pseudo_labels(triplet, video.category_index, n_categories, n_frames, config.pseudo_labels)


def _diverged(epoch: int, output: Path) -> None:
    raise StateChangeError(
        f"The loss became non-finite in epoch {epoch}; training stopped and the last good checkpoint in "
        f"{output / LAST} is intact: lower --lr / --lr-backbone, or check the input videos, then --resume."
    )


def _set_mode(model: StateChangeModel, training: bool, train_backbone: bool) -> None:
    """The heads (and a fine-tuned backbone) to training or evaluation mode; a frozen backbone stays in
    evaluation mode (batch-norm statistics and dropout as loaded) and is not walked: switching its hundreds
    of modules twice a video took 40 % of a step on stored features."""
    if train_backbone:
        model.train(training)
        return
    model.training = training
    model.state_head.train(training)
    model.action_head.train(training)
    if model.backbone.training:
        model.backbone.eval()


@dataclass(frozen=True)
class _StepLosses:
    """One optimiser step's losses as optimised (summed over the videos of every rank) and gradient norm."""

    loss: float
    state_loss: float
    action_loss: float
    grad_norm: float
    n_videos: int  # videos that contributed, all ranks and micro-batches together


_MicroBatchLosses = torch.Tensor  # float64 [4]: loss, state loss, action loss, videos used, of one rank


def _backward(run: _Run, prepared: list[_Prepared], last_of_step: bool) -> _MicroBatchLosses:
    """Forward/backward of one micro-batch's pseudo-labelled frames; gradients add up until the optimiser step.

    A rank with no usable video still takes part with a zero-weight input so that gradient all-reduces
    stay matched across ranks. Under DDP, gradients are all-reduced once, on the last micro-batch of a step.
    An ensemble on frames (a fine-tuned backbone) takes one forward/backward per member, so the frames
    holding activations at once are a single pair's 5n per video, as in the paper.
    """
    config, device, world_size = run.config, run.context.device, run.context.world_size
    empty = not prepared
    if empty:
        prepared = [_placeholder(run.model, device, run.use_features, config)]
    members = run.model.config.ensemble_size  # K
    batch = _MicroBatch(
        inputs=torch.cat([p.inputs for p in prepared]),  # [B * K * 5n, ...]
        state_targets=torch.cat([p.labels.state_targets for p in prepared]).to(device),
        state_mask=torch.cat([p.labels.state_mask for p in prepared]).to(device),
        action_targets=torch.cat([p.labels.action_targets for p in prepared]).to(device),
        video_weight=(torch.zeros(1) if empty else run.video_weights[[p.position for p in prepared]]).to(device),
        n=len(prepared[0].labels.frames) // members,  # 5n
    )
    is_ddp = isinstance(run.step_module, torch.nn.parallel.DistributedDataParallel)
    groups: list[int | None] = list(range(members)) if members > 1 and not run.use_features else [None]
    state_loss = action_loss = loss = torch.zeros((), device=device)
    for position, member in enumerate(groups):
        synchronise = not is_ddp or (last_of_step and position == len(groups) - 1)
        with contextlib.nullcontext() if synchronise else run.step_module.no_sync():
            state_part, action_part = _loss_of_rows(run, batch, member)
            loss_part = _release_loss_scale(state_part + action_part, config, world_size)
            loss_part.backward()
        state_loss, action_loss = state_loss + state_part.detach(), action_loss + action_part.detach()
        loss = loss + loss_part.detach()  # 0 + x is x exactly: one group logs what it computed
    n_videos = torch.tensor(0.0 if empty else float(len(prepared)), dtype=torch.float64, device=device)
    logged = [loss.detach(), *(_release_loss_scale(part.detach(), config, world_size)
                               for part in (state_loss, action_loss))]
    if members > 1:  # the log shows a member's mean loss, comparable with a single pair of heads
        logged = [value / members for value in logged]
    return torch.stack([logged[0].double(), logged[1].double(), logged[2].double(), n_videos])


@dataclass(frozen=True)
class _MicroBatch:
    """One micro-batch's pseudo-labelled rows: B videos x K ensemble members x 5n frames (``_Prepared``)."""

    inputs: torch.Tensor  # [B*K*5n, F] features or uint8 [B*K*5n, 3, crop, crop] frames
    state_targets: torch.Tensor  # LongTensor [B*K*5n]
    state_mask: torch.Tensor  # FloatTensor [B*K*5n]
    action_targets: torch.Tensor  # LongTensor [B*K*5n]
    video_weight: torch.Tensor  # FloatTensor [B]
    n: int  # 5n: rows per video and member


def _loss_of_rows(run: _Run, batch: _MicroBatch, member: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed state loss and weighted action loss of ensemble member ``member``'s rows (None: of every
    row, each scored by its own member). Members' losses add up, so each member trains as it would alone."""
    device, members, n = run.context.device, run.model.config.ensemble_size, batch.n
    rows: slice | torch.Tensor = slice(None)
    if member is None:
        weight = batch.video_weight.repeat_interleave(members)[:, None]  # [B*K, 1]: a video's weight per member
    else:
        rows = torch.arange(len(batch.inputs), device=device).view(-1, members, n)[:, member].reshape(-1)  # [B*5n]
        weight = batch.video_weight[:, None]  # [B, 1]
    if member is None and members > 1 and run.use_features:  # each member's heads on its own rows only
        grouped = batch.inputs.view(-1, members, n, batch.inputs.shape[-1])  # [B, K, 5n, F]
        with autocast(device, run.config.precision):
            state_logits, action_logits = run.step_module(grouped, True, own_rows=True)  # [B, K, 5n, C]
        state_logits, action_logits = state_logits.flatten(0, 2), action_logits.flatten(0, 2)  # [B*K*5n, C]
    else:  # every member's heads on the rows, then each row's own member kept
        with autocast(device, run.config.precision):
            state_logits, action_logits = run.step_module(batch.inputs[rows], run.use_features)  # [R, K, C]
        index = torch.arange(len(state_logits), device=device)
        owner = (index // n) % members if member is None else torch.full_like(index, member)  # [R]: row's member
        state_logits, action_logits = state_logits[index, owner], action_logits[index, owner]  # [R, C]: own
    state_loss = F.cross_entropy(state_logits.float(), batch.state_targets[rows], reduction="none")
    state_loss = state_loss * batch.state_mask[rows]  # [R]
    action_loss = F.cross_entropy(action_logits.float(), batch.action_targets[rows], reduction="none")
    state_loss = (state_loss.view(-1, n) * weight).sum()
    action_loss = run.config.loss.action_loss_weight * (action_loss.view(-1, n) * weight).sum()
    return state_loss, action_loss


def _release_loss_scale(loss: torch.Tensor, config: TrainConfig, world_size: int) -> torch.Tensor:
    """Scale a rank's summed loss so that the gradient is the release's for a batch of world_size x K micro-batches.

    The release sums the loss over a rank's videos. With a frozen backbone it multiplies by the world
    size to undo DDP's averaging (gradient = sum over every video of the step); fine-tuned, DDP's average
    over ranks stays. Accumulating K micro-batches per rank keeps both: a frozen run sums them all, a
    fine-tuned run divides by K so the gradient is the average over world_size x K "ranks".
    """
    if not config.optim.train_backbone:
        return loss * world_size  # undo DDP's gradient averaging, as the release does
    accumulate = config.optim.accumulate_steps
    return loss / accumulate if accumulate > 1 else loss


def _optimiser_step(run: _Run, group: list[_MicroBatchLosses]) -> _StepLosses:
    """One optimiser and schedule step after a group of micro-batches, unless no rank used a video.

    Returns NaN losses (and takes no step) when the loss is not finite.
    """
    world_size = run.context.world_size
    values = distributed.all_reduce_sum(torch.stack(group).sum(dim=0))  # [4], summed over micro-batches, ranks
    losses = values[:3] / world_size  # the same numbers on every rank
    n_videos = int(values[3].item())
    if not torch.isfinite(losses).all():
        return _StepLosses(math.nan, math.nan, math.nan, math.nan, n_videos)
    if n_videos == 0:  # only zero-weight placeholders: no momentum, weight decay or schedule step either
        run.optimisation.zero_grad()
        return _StepLosses(0.0, 0.0, 0.0, 0.0, 0)
    parameters = [p for p in run.model.parameters() if p.grad is not None]
    grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in parameters])).item()
    run.optimisation.step()
    return _StepLosses(losses[0].item(), losses[1].item(), losses[2].item(), grad_norm, n_videos)


def _placeholder(model: StateChangeModel, device: torch.device, use_features: bool, config: TrainConfig) -> _Prepared:
    """A zero-weight stand-in for a batch whose videos were all skipped."""
    one = pseudo_labels((0, 1, 2), 0, model.n_categories, 3, config.pseudo_labels)
    labels = concatenate_labels([one] * model.config.ensemble_size)
    size = len(labels.frames)
    if use_features:
        inputs = torch.zeros(size, model.feature_dim, device=device)
    else:
        inputs = torch.zeros(size, 3, config.frames.crop, config.frames.crop, dtype=torch.uint8, device=device)
    return _Prepared(inputs, labels, -1)


# ----------------------------------------------------------------------------------------------
# features, checkpoints, logs


def _needs_exact_frames(video: IndexedVideo) -> bool:
    """Annotated videos are evaluated, and evaluation sees exactly the frames of direct decoding."""
    return video.annotation is not None


def _frame_source(video: IndexedVideo, frame_cache: FrameCache | None, config: TrainConfig) -> str:
    """Where the video's frames come from (stored features are keyed by it)."""
    return frame_source(video.video, frame_cache, fps=config.frames.fps, size=config.frames.size,
                        exact=_needs_exact_frames(video))


def _compute_features(model: StateChangeModel, videos: list[IndexedVideo], store: FeatureStore,
                      frame_cache: FrameCache | None, config: TrainConfig, forward: ForwardSettings,
                      context: distributed.DistributedContext, log: _Logger, progress: bool) -> None:
    """Backbone features of every video not yet stored; the videos are shared across ranks."""
    store.remove_temp_files()  # of runs killed while writing (a live writer's, e.g. another rank's, are kept)
    missing = [v for v in videos if store.get(v.video, _frame_source(v, frame_cache, config)) is None]
    distributed.barrier()  # every rank lists before any writes: the shards below must come from one list
    if missing:
        log.print(f"computing backbone features of {len(missing)} videos (once; stored in {store.directory})")
    model.eval()
    shard = missing[context.rank :: context.world_size]
    failed = compute_features(
        model, shard,
        lambda video: load_frames(video.video, frame_cache, fps=config.frames.fps, size=config.frames.size,
                                  exact=_needs_exact_frames(video)),
        lambda video, features: store.put(video.video, features.cpu(), _frame_source(video, frame_cache, config)),
        forward, context.is_main and progress)
    failures = [f"skipping {video.path}: {reason}" for video, reason in failed]
    for lines in distributed.all_gather_objects(failures):
        for line in lines:
            log.print(line)
    distributed.barrier()


def _training_state(epoch: int, record: dict[str, Any] | None, optimisation: Optimisation,
                    best_precision: float, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """What `last` needs beyond the weights: ``epoch`` is the number of completed epochs, ``ranks`` each rank's
    ``_rank_state`` in rank order."""
    return {
        "epoch": epoch,
        **optimisation.state_dict(),  # "optimizers", "schedulers"
        "best_state_precision": best_precision,
        "ranks": ranks,
        "log_record": record,  # the epoch's log line, restored on --resume if a kill cut it off
    }


def _resume(directory: Path, model: StateChangeModel, optimisation: Optimisation, config: TrainConfig,
            index: DatasetIndex, context: distributed.DistributedContext, log: _Logger,
            held_out: HeldOut | None) -> tuple[int, float, dict[str, Any] | None]:
    """Load the last checkpoint's weights and training state.

    Returns (first epoch to run, best precision, this rank's position in that epoch when `last` was saved
    mid-epoch, else None).
    """
    if find_checkpoint(directory) is None:
        log.print(f"--resume: no checkpoint at {directory} yet, starting from scratch")
        log.restore(0, None)
        return 1, -math.inf, None
    checkpoint = load_checkpoint(directory, device="cpu")
    if list(checkpoint.categories) != list(index.categories):
        raise StateChangeError(
            f"The checkpoint in {directory} was trained on categories {checkpoint.categories}, not the "
            f"{index.categories} found now: resume with the same video roots or use another --output."
        )
    state = checkpoint.training_state
    if state is None:
        raise StateChangeError(f"{directory} holds no training state to resume from: use another --output.")
    saved = checkpoint.metadata.get("train_config", {})
    changed = _changed_settings(saved, json.loads(json.dumps(to_dict(config))))
    if changed:
        raise StateChangeError(
            f"--resume: the run in {directory} was started with other settings ({'; '.join(changed)}): resume with "
            "the settings it was started with, or start a new run (another --output, or --overwrite)."
        )
    check_same_validation(checkpoint.metadata, held_out, directory)
    if saved and saved.get("optim", {}).get("n_epochs") != config.optim.n_epochs:
        log.print(f"--resume: continuing to {config.optim.n_epochs} epochs (the run was started for "
                  f"{saved.get('optim', {}).get('n_epochs')})")
    progress = _resumed_progress(state, directory, context)
    model.load_state_dict(checkpoint.model.state_dict())
    optimisation.load_state_dict(state)
    rank_state = _own_rank_state(state, context)
    last_step = None if progress is None else (progress["epoch"] - 1) * progress["steps_per_epoch"] + progress["step"]
    log.restore(int(state["epoch"]), state.get("log_record"), last_step)
    if progress is None:
        _set_rng_states(rank_state["rng"], context.device)
        log.print(f"resumed from {checkpoint.path} after epoch {state['epoch']}")
        return int(state["epoch"]) + 1, float(state["best_state_precision"]), None
    log.print(f"resumed from {checkpoint.path} in epoch {progress['epoch']} after step {progress['step']} of "
              f"{progress['steps_per_epoch']}")
    return progress["epoch"], float(state["best_state_precision"]), progress | rank_state


def _changed_settings(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``name saved -> current`` for each setting a resume would change, except ``RESUMABLE_SETTINGS``
    (settings one side does not know, retired or new, are skipped)."""
    changes = []
    for key, value in current.items():
        name = f"{prefix}{key}"
        if key not in saved or name in RESUMABLE_SETTINGS:
            continue
        if isinstance(value, dict) and isinstance(saved[key], dict):
            changes += _changed_settings(saved[key], value, f"{name}.")
        elif saved[key] != value:
            changes.append(f"{name} {saved[key]!r} -> {value!r}")
    return changes


class _Logger:
    """Console lines, ``log.jsonl`` (epochs), ``steps.jsonl`` (every ``log_every_steps`` optimiser steps),
    TensorBoard and, with ``--report-to wandb``, Weights & Biases: all on the main process only."""

    def __init__(self, output: Path, enabled: bool, rank: int = 0, options: TrainOptions = TrainOptions(),
                 settings: dict[str, Any] | None = None) -> None:
        self.enabled, self.rank, self.output = enabled, rank, output
        self.jsonl = output / LOG_FILE
        self.steps_jsonl = output / STEPS_LOG_FILE
        self.tensorboard = output / TENSORBOARD_DIR
        self.reporters: list[TensorBoardReporter | WandbReporter] = []
        if TENSORBOARD in options.report_to:
            self.reporters.append(TensorBoardReporter(self.tensorboard))
        if WANDB in options.report_to:
            self.reporters.append(WandbReporter(output, options.wandb_project, settings or {}))
        # the files are created with the first record, so a run that fails in its set-up (bad option,
        # missing weights) leaves no output folder behind

    def restore(self, epoch: int, record: dict[str, Any] | None, last_step: int | None = None) -> None:
        """After a resume from ``epoch``: keep the log's earlier epochs, then ``record`` (the checkpoint's own
        copy of epoch ``epoch``), so that every epoch is logged exactly once however the last run was killed.
        ``last_step``: the optimiser step a mid-epoch checkpoint was saved after (its steps' records are kept)."""
        if not self.enabled:
            return
        last_kept = epoch - 1 if record is not None else epoch  # a checkpoint without its record keeps the log's
        kept = [line for line in _log_lines(self.jsonl) if json.loads(line)["epoch"] <= last_kept]
        if self.jsonl.exists():
            write_text(self.jsonl, "".join(kept))
        kept_steps = [line for line in _log_lines(self.steps_jsonl)
                      if (json.loads(line)["epoch"] <= epoch if last_step is None
                          else json.loads(line)["step"] <= last_step)]
        if self.steps_jsonl.exists():
            write_text(self.steps_jsonl, "".join(kept_steps))
        # TensorBoard is rebuilt from the kept records: a purge_step alone left a killed run's events visible
        # when its event file sorted after the new one (seen once in CI); TensorBoard holds only these records
        # (W&B keeps its own history and drops the steps it already has)
        shutil.rmtree(self.tensorboard, ignore_errors=True)
        tensorboard = [r for r in self.reporters if isinstance(r, TensorBoardReporter)]
        for reporter in tensorboard:
            for line in kept_steps:
                values = json.loads(line)
                reporter.step(values.pop("step"), {k: v for k, v in values.items() if k != "epoch"})
            for line in kept:
                reporter.epoch(json.loads(line))
        if record is not None:
            self.epoch(record, quiet=True)

    def print(self, message: str) -> None:
        if self.enabled:
            write(message)

    def warn(self, message: str) -> None:
        """A line from any rank (e.g. a video it skipped), prefixed with the rank on the others."""
        write(message if self.enabled else f"[rank {self.rank}] {message}")

    def step(self, epoch: int, step: int, values: dict[str, float]) -> None:
        """An optimiser step's losses and learning rates (``step`` counts the run's optimiser steps from 1)."""
        if not self.enabled:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        with open(self.steps_jsonl, "a") as file:
            file.write(json.dumps({"epoch": epoch, "step": step, **values}) + "\n")
        for reporter in self.reporters:
            reporter.step(step, values)

    def epoch(self, record: dict[str, Any], quiet: bool = False) -> None:
        if not self.enabled:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        with open(self.jsonl, "a") as file:
            file.write(json.dumps(record) + "\n")
        for reporter in self.reporters:
            reporter.epoch(record)
        if not quiet:
            self.print(_epoch_line(record))

    def finish(self, settings: dict[str, Any], metrics: dict[str, Any]) -> None:
        """The run's settings beside its final metrics (TensorBoard's HParams, W&B's summary)."""
        if self.enabled:
            numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
            for reporter in self.reporters:
                reporter.finish(settings, numbers)

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.close()


def _final_line(run: _Run, record: dict[str, Any] | None) -> str:
    """The run's last console line: where its final checkpoint is, and that checkpoint's metrics."""
    n_epochs, last = run.config.optim.n_epochs, run.paths.output / LAST
    if record is None:
        return f"nothing to train: {last} already holds epoch {run.start_epoch - 1} of {n_epochs}"
    metrics = record.get("metrics")
    scores = "" if not metrics else (
        f": state P@1 {metrics['state_precision']:.1f}, action P@1 {metrics['action_precision']:.1f}, "
        f"joint {metrics['joint_state_precision']:.1f}/{metrics['joint_action_precision']:.1f} on "
        f"{metrics['n_videos']} videos")
    if record["epoch"] < n_epochs:
        return f"stopped after epoch {record['epoch']} of {n_epochs}: {last} (continue with --resume){scores}"
    return f"done, {n_epochs} epoch{'s' if n_epochs > 1 else ''}: final checkpoint {last}{scores}"


def _epoch_line(record: dict[str, Any]) -> str:
    """The console line of an epoch's record."""
    metrics = record.get("metrics") or {}
    line = (f"epoch {record['epoch']}: loss {record['loss']:.4f} (state {record['state_loss']:.4f}, action "
            f"{record['action_loss']:.4f}), lr {record['lr']:.2e}, grad norm {record['grad_norm']:.3f}")
    if metrics:
        line += (f" | state P@1 {metrics['state_precision']:.1f}, action P@1 {metrics['action_precision']:.1f}, "
                 f"joint {metrics['joint_state_precision']:.1f}/{metrics['joint_action_precision']:.1f}")
    return line


def _log_lines(path: Path) -> list[str]:
    """The complete lines of a JSON-lines log (a line cut off by a kill is dropped); empty when absent."""
    if not path.exists():
        return []
    return [line + "\n" for line in path.read_text().splitlines() if line.strip() and _is_json(line)]


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# the output folder


def _claim_output(output: Path, options: TrainOptions, context: distributed.DistributedContext) -> None:
    """Refuse to train over a run already in ``output`` unless resuming it; with ``overwrite``, remove that run
    (naming what is removed). The features folder is a cache keyed by the backbone's weights and is kept."""
    if options.resume and options.overwrite:
        raise StateChangeError("--resume continues the run in --output and --overwrite replaces it: pass one of them.")
    found = _run_files(output)
    if not found or options.resume:
        return
    names = ", ".join(path.name for path in found)
    if not options.overwrite:
        raise StateChangeError(
            f"{output} already holds a training run ({names}): use --resume to continue it, or --overwrite to "
            "start again (which deletes it), or choose another --output."
        )
    if context.is_main:
        write(f"--overwrite: deleting the previous run in {output} ({names})")
        for path in found:
            remove_path(path)
    distributed.barrier()


def _run_files(output: Path) -> list[Path]:
    """What a training run leaves in its output folder (checkpoints, including one cut off mid-save, and logs)."""
    candidates = [output / LAST, replaced_path(output / LAST), output / BEST, replaced_path(output / BEST),
                  output / LOG_FILE, output / STEPS_LOG_FILE, output / TENSORBOARD_DIR, output / WANDB_ID_FILE,
                  output / WANDB_DIR]
    return [path for path in candidates if path.exists()]
