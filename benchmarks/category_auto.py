"""`predict --category auto` on a synthetic dataset: how often each ranking rule picks the video's true
category (beside chance), and where the "no clear state change" threshold separates videos with a
change from videos without one (the synthetic training set's irrelevant kinds: background only,
initial state only, end state only).

    python benchmarks/category_auto.py --checkpoint RUN/last --data SYNTHETIC_ROOT [--device cpu]

SYNTHETIC_ROOT is what ``statechange synth`` (or the demo's data/) wrote: videos/, dataset/, truth/.
Every category's curves come from one forward pass per video (the predictor's own path). With
``--features DIR --cache DIR`` (a frozen-backbone run's feature store and the frame cache it trained
from), the heads run on the backbone features stored there instead (the same logits without the
backbone's cost; training videos' features then come from the cache's JPEG frames, as in training).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from statechange.data.cache import FrameCache, frame_source
from statechange.data.decode import iter_frame_chunks
from statechange.data.index import VideoFile, find_videos, read_annotation
from statechange.features import FeatureStore, backbone_fingerprint
from statechange.inference import StateChangePredictor, load_model, rank_categories, video_logits
from statechange.labels import ANNOTATION_ACTION, category_probabilities

RULES = ("triplet score", "max action probability", "mean state+action probability")


def rule_scores(state: torch.Tensor, action: torch.Tensor, n_categories: int) -> dict[str, np.ndarray]:
    """Each ranking rule's score per category [N] from one video's logits [T, 2N+1], [T, N+1]."""
    ranked, initial, act, end, _, scores = rank_categories(state, action, list(range(n_categories)), None)
    by_category = np.empty(n_categories)
    by_category[ranked] = scores.cpu().numpy()
    index = torch.arange(n_categories)
    initial, act, end = category_probabilities(state.expand(n_categories, -1, -1),
                                               action.expand(n_categories, -1, -1), index)  # [N, T]
    return {
        RULES[0]: by_category,
        RULES[1]: act.max(dim=1).values.cpu().numpy(),
        RULES[2]: (initial + act + end).mean(dim=1).cpu().numpy(),
    }


def truth_of(data: Path, category: str, video_id: str) -> np.ndarray | None:
    for folder in (data / "dataset" / "annotations", data / "truth"):
        path = folder / category / f"{video_id}.fps1.csv"
        if path.is_file():
            return read_annotation(path)
    return None


def best_threshold(with_change: np.ndarray, without: np.ndarray) -> tuple[float, float]:
    """The threshold (midpoint between sorted scores) with the best balanced accuracy, and that accuracy."""
    candidates = np.unique(np.concatenate([with_change, without]))
    cuts = np.concatenate([[0.0], (candidates[1:] + candidates[:-1]) / 2, [1.0]])
    accuracy = [((with_change >= c).mean() + (without < c).mean()) / 2 for c in cuts]
    best = int(np.argmax(accuracy))
    return float(cuts[best]), float(accuracy[best])


@torch.no_grad()
def logits_of(predictor: StateChangePredictor, video: VideoFile, store: FeatureStore | None,
              cache: FrameCache | None) -> tuple[torch.Tensor, torch.Tensor]:
    """State [T, 2N+1] and action [T, N+1] logits: the heads on stored features when there are some, else the
    whole model on the decoded video."""
    if store is not None:
        features = store.get(video, frame_source(video, cache, predictor.frames.fps, predictor.frames.size))
        if features is not None:
            return predictor.model.heads(features.to(predictor.settings.device))
    chunks = iter_frame_chunks(video.path, predictor.settings.chunk_size, fps=predictor.frames.fps,
                               size=predictor.frames.size)
    logits = [video_logits(predictor.model, chunk, predictor.settings) for chunk in chunks]
    return torch.cat([s for s, _ in logits]), torch.cat([a for _, a in logits])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--features", type=Path, default=None, help="a frozen-backbone run's feature store")
    parser.add_argument("--cache", type=Path, default=None, help="the frame cache that run trained from")
    args = parser.parse_args()
    predictor = load_model(args.checkpoint, device=args.device)
    model = predictor.model
    store = None if args.features is None else FeatureStore(
        args.features, backbone_fingerprint(model.backbone, model.config.backbone, predictor.frames,
                                             predictor.settings.precision, torch.device(args.device).type))
    cache = None if args.cache is None else FrameCache(args.cache)
    n_categories = len(predictor.categories)
    hits = {rule: [] for rule in RULES}
    true_scores: dict[bool, list[float]] = {True: [], False: []}
    started = time.time()
    for video in find_videos([args.data / "videos"]):
        labels = truth_of(args.data, video.category, video.video_id)
        if labels is None or video.category not in predictor.categories:
            continue
        state, action = logits_of(predictor, video, store, cache)
        scores = rule_scores(state, action, n_categories)
        truth = predictor.categories.index(video.category)
        has_change = bool((labels == ANNOTATION_ACTION).any())
        true_scores[has_change].append(float(scores[RULES[0]][truth]))
        if has_change:
            for rule in RULES:
                hits[rule].append(int(np.argmax(scores[rule])) == truth)
    print(f"{len(true_scores[True])} videos with a change, {len(true_scores[False])} without; "
          f"{n_categories} categories; {time.time() - started:.0f} s")
    print(f"chance: {1 / n_categories:.3f}")
    for rule in RULES:
        print(f"{rule}: right category in {np.mean(hits[rule]):.3f} ({sum(hits[rule])}/{len(hits[rule])})")
    with_change, without = np.array(true_scores[True]), np.array(true_scores[False])
    for name, values in (("with a change", with_change), ("without a change", without)):
        if len(values):
            print(f"triplet score {name}: median {np.median(values):.3f}, "
                  f"10-90% {np.percentile(values, 10):.3f}-{np.percentile(values, 90):.3f}")
    if len(with_change) and len(without):
        threshold, accuracy = best_threshold(with_change, without)
        print(f"best threshold {threshold:.3f} (balanced accuracy {accuracy:.3f}); "
              f"flags {(with_change < threshold).mean():.3f} of changes, {(without < threshold).mean():.3f} "
              "of no-change videos")


if __name__ == "__main__":
    main()
