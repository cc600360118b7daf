"""Benchmark of the integrity checks (issue 9): what verifying checksums on load costs.

- Checkpoint: a real checkpoint (default: the CLIP ViT-L/14 architecture with random weights, 1.2 GB)
  saved by ``save_checkpoint``; ``load_checkpoint`` followed by one read of every weight (what the
  first forward pass or a move to the GPU does; the load itself maps the file and reads nothing).
  Timed with the checksums config.json records (the check as shipped: XXH3-128 hashed in a thread
  while the model is built) and with them removed (a checkpoint from before checksums: no check).
  The alternatives are timed as well: each hash as a separate pass before the unchecked load
  (SHA-256 as first written, BLAKE2b, CRC-32, XXH3-128) and SHA-256 in a thread beside it.
  Each both warm (the file in the page cache) and cold (evicted with posix_fadvise first); the variants
  take turns, round after round, so that a changing machine load slows them alike.
- Hash throughput of each algorithm over the model file's bytes in memory.
- Frame cache: a 300-frame 398x224 JPEG entry: ``FrameCache.get`` (check + decode), the check
  alone, and ``extract``'s freshness check of an entry (read + check) against reading its index only.

Prints a table and saves benchmarks/results/integrity.json with the device and load.

    python benchmarks/integrity.py                        # ViT-L/14 (1.2 GB); about 3 minutes
    python benchmarks/integrity.py --backbone tiny        # quick run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash

from statechange.checkpoint import CONFIG_FILE, MODEL_FILE, load_checkpoint, save_checkpoint
from statechange.config import ModelConfig
from statechange.data.cache import FrameCache, _read_index
from statechange.data.index import VideoFile
from statechange.model import init_model

RESULTS = Path(__file__).parent / "results" / "integrity.json"
REPEATS = 7
N_FRAMES = 300
FRAME_SHAPE = (224, 398, 3)
CHUNK = 1 << 20
HASHES: dict[str, Callable[[], Any]] = {
    "sha256": hashlib.sha256, "blake2b": hashlib.blake2b, "xxh3_128": xxhash.xxh3_128,
}


def median_seconds(function: Callable[[], Any], before: Callable[[], None] = lambda: None) -> float:
    """Median time of ``function`` over REPEATS calls (after one untimed call), ``before`` run untimed before each."""
    function()
    times = []
    for _ in range(REPEATS):
        before()
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved_medians(variants: dict[str, Callable[[], Any]], before: Callable[[], None]) -> dict[str, float]:
    """Median time of each variant over REPEATS rounds that run every variant once (after one untimed round), so
    that a machine whose load drifts slows every variant alike; ``before`` runs untimed before each call."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(REPEATS + 1):
        for name, variant in variants.items():
            before()
            started = time.perf_counter()
            variant()
            if round_index:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def evict(*paths: Path) -> None:
    """Drop files from the page cache, so the next read comes from the disk."""
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(descriptor)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def file_hash(path: Path, algorithm: str) -> str:
    """One pass over a file in 1 MB chunks with ``algorithm`` (``crc32`` or a HASHES name)."""
    buffer = memoryview(bytearray(CHUNK))
    if algorithm == "crc32":
        value = 0
        with open(path, "rb", buffering=0) as file:
            while count := file.readinto(buffer):
                value = zlib.crc32(buffer[:count], value)
        return f"{value:08x}"
    digest = HASHES[algorithm]()
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(buffer):
            digest.update(buffer[:count])
    return digest.hexdigest()


def hash_throughputs(data: bytes) -> dict[str, float]:
    """GB/s of each hash over bytes in memory."""
    figures = {"crc32_gb_per_s": len(data) / median_seconds(lambda: zlib.crc32(data)) / 1e9}
    for name, algorithm in HASHES.items():
        figures[f"{name}_gb_per_s"] = len(data) / median_seconds(lambda a=algorithm: a(data).hexdigest()) / 1e9
    return figures


def load_and_read(checkpoint: Path) -> None:
    """load_checkpoint, then every weight read once."""
    for tensor in load_checkpoint(checkpoint, load_training_state=False).model.state_dict().values():
        tensor.sum()


def checkpoint_figures(folder: Path, backbone: str) -> dict[str, float]:
    model = init_model(ModelConfig(backbone=backbone, hidden_sizes=(512,)), 44, seed=0)
    checked = save_checkpoint(folder / "checked", model, [f"c{i}" for i in range(44)], {})
    del model
    unchecked = folder / "unchecked"  # the same checkpoint without recorded checksums
    shutil.copytree(checked, unchecked)
    config = json.loads((unchecked / CONFIG_FILE).read_text())
    config.pop("xxh3_128")
    (unchecked / CONFIG_FILE).write_text(json.dumps(config))
    model_file = checked / MODEL_FILE
    size = model_file.stat().st_size
    figures = {"model_file_mb": size / 2**20, **hash_throughputs(model_file.read_bytes())}

    def separate(algorithm: str) -> Callable[[], None]:
        return lambda: (file_hash(unchecked / MODEL_FILE, algorithm), load_and_read(unchecked))

    def sha256_in_thread() -> None:
        with ThreadPoolExecutor(1) as pool:
            digest = pool.submit(file_hash, unchecked / MODEL_FILE, "sha256")
            load_and_read(unchecked)
            digest.result()

    variants: dict[str, Callable[[], None]] = {
        "unchecked": lambda: load_and_read(unchecked),
        "checked_as_shipped": lambda: load_and_read(checked),
        **{f"separate_pass_{name}": separate(name) for name in ("sha256", "blake2b", "crc32", "xxh3_128")},
        "sha256_in_thread": sha256_in_thread,
    }
    for temperature, before in (("warm", lambda: None), ("cold", lambda: evict(model_file, unchecked / MODEL_FILE))):
        for name, seconds in interleaved_medians(variants, before).items():
            figures[f"{temperature}_{name}_s"] = seconds
        base = figures[f"{temperature}_unchecked_s"]
        for name in variants:
            if name != "unchecked":
                figures[f"{temperature}_{name}_vs_unchecked"] = figures[f"{temperature}_{name}_s"] / base
    return figures


def textured_frames(rng: np.random.Generator) -> np.ndarray:
    """uint8 [N_FRAMES, H, W, 3] of smooth gradients with grain (JPEG sizes near real video's)."""
    height, width, _ = FRAME_SHAPE
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((N_FRAMES, *FRAME_SHAPE), dtype=np.uint8)
    for index in range(N_FRAMES):
        base = 128 + 60 * np.sin(x / (20 + index % 7) + index / 9.0)[..., None] * np.cos(y / 31.0)[..., None]
        frames[index] = np.clip(base + rng.normal(0, 12, FRAME_SHAPE), 0, 255).astype(np.uint8)
    return frames


def cache_figures(folder: Path) -> dict[str, float]:
    source = folder / "videos" / "c" / "v.mp4"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"stand-in source: the entry records its size and time")
    video = VideoFile("c", "v", source)
    cache = FrameCache(folder / "cache")
    entry = cache.put(video, textured_frames(np.random.default_rng(0)))
    images = entry.read_bytes()
    figures = {"entry_mb": len(images) / 2**20, "get_s": median_seconds(lambda: cache.get(video)),
               "entry_state_s": median_seconds(lambda: cache.entry_state(video)),
               "index_only_s": median_seconds(lambda: _read_index(entry))}
    for name in ("xxh3_128", "sha256"):
        figures[f"{name}_s"] = median_seconds(lambda n=name: HASHES[n](images).hexdigest())
    figures["check_share_of_get"] = figures["xxh3_128_s"] / figures["get_s"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=ModelConfig().backbone, help="architecture of the checkpoint")
    parser.add_argument("--folder", type=Path, default=None,
                        help="where to write the test files (default: a temporary folder; cold reads need a disk)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.folder) as temporary:
        folder = Path(temporary)
        load_before = os.getloadavg()[0]
        results: dict[str, Any] = {"checkpoint": checkpoint_figures(folder, args.backbone),
                                   "frame_cache": cache_figures(folder)}
    results["device"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                         "load_average_1min_before": load_before, "load_average_1min_after": os.getloadavg()[0],
                         "python": platform.python_version(), "torch": torch.__version__,
                         "backbone": args.backbone,
                         "date": datetime.now(timezone.utc).isoformat(timespec="minutes")}
    for group, figures in results.items():
        for key, value in figures.items():
            shown = f"{value:.4g}" if isinstance(value, float) else value
            print(f"{group:12s} {key:36s} {shown}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
