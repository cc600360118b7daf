"""Speed of the causal-ordering decode (statechange.ordering.best_triplet / best_pair).

Batch of 64 videos, T in {100, 300, 1000, 5000}, D = 500 and no limit, on the CPU and (when present)
CUDA. Prints a table and saves benchmarks/results/ordering.json with the device description.
Target (issue 2): B = 64, T = 1000, D = 500 in <= 5 ms on the 2-core CPU.

    python benchmarks/ordering.py [--repeats 50] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from statechange.ordering import best_pair, best_triplet

BATCH = 64
LENGTHS = (100, 300, 1000, 5000)
DISTANCES = (500, None)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def time_call(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of fn() in milliseconds."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "ordering.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    generator = torch.Generator().manual_seed(0)
    for device in devices:
        for n_frames in LENGTHS:
            probs = [torch.rand(BATCH, n_frames, generator=generator).to(device) for _ in range(3)]
            for distance in DISTANCES:
                ms = time_call(partial(best_triplet, *probs, max_distance=distance), device, args.repeats)
                rows.append({"device": device.type, "device_name": describe(device), "function": "best_triplet",
                             "batch": BATCH, "frames": n_frames, "max_distance": distance, "ms": round(ms, 3)})
            ms = time_call(partial(best_pair, probs[0], probs[2]), device, args.repeats)
            rows.append({"device": device.type, "device_name": describe(device), "function": "best_pair",
                         "batch": BATCH, "frames": n_frames, "max_distance": None, "ms": round(ms, 3)})

    print(f"{'device':<8}{'function':<14}{'B':>4}{'T':>6}{'D':>6}{'ms':>10}")
    for row in rows:
        distance = "-" if row["max_distance"] is None else row["max_distance"]
        print(f"{row['device']:<8}{row['function']:<14}{row['batch']:>4}{row['frames']:>6}{distance:>6}{row['ms']:>10.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": torch.get_num_threads(),
              "devices": {d.type: describe(d) for d in devices}, "results": rows}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
