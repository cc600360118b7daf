"""``statechange extract``: decode every video once into the frame cache (1 fps, 398x224)."""

from __future__ import annotations

import argparse
from pathlib import Path

from statechange.cli._common import add_runtime_options, add_subcommand
from statechange.config import DEFAULT_CACHE_QUALITY, LOSSLESS
from statechange.errors import StateChangeError
from statechange.runtime import default_workers


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "extract",
        help="decode the videos once into a frame cache that training and evaluation read",
        description="Decode every video of the video roots at 1 fps into <cache>/<category>/<video_id>"
        ".frames. Videos already cached are skipped; failures are listed in <cache>/failures.csv.",
    )
    parser.add_argument(
        "--video-roots",
        nargs="+",
        required=True,
        type=Path,
        metavar="DIR",
        help="folders laid out as <root>/<category>/<video_id>.<ext>",
    )
    parser.add_argument("--cache", required=True, type=Path, metavar="DIR", help="the frame cache folder")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        metavar="N",
        help="processes decoding in parallel: the available CPUs, at most 4",
    )
    parser.add_argument(
        "--quality",
        default=str(DEFAULT_CACHE_QUALITY),
        metavar="Q",
        help=f"JPEG quality 1-95 of the cached frames, or {LOSSLESS} (PNG, bit-identical to decoding, 5-7x "
        f"larger; figures in docs/benchmarks.md) (default: {DEFAULT_CACHE_QUALITY})",
    )
    parser.add_argument(
        "--dataset-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="a ChangeIt-format dataset whose annotated videos are cached losslessly (evaluation reads only "
        "exact frames and decodes videos whose entry is lossy); when not given, every video is stored at --quality",
    )
    parser.add_argument("--retry-failed", action="store_true",
                        help="decode again the videos that failed last time even if their files are unchanged "
                        "(by default a failed file is tried again only once its size or modification time changes)")
    add_runtime_options(parser, device=False, forward=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from statechange.data.cache import FAILURES_FILE, extract_videos, parse_quality
    from statechange.data.index import annotation_files, find_videos

    for root in args.video_roots:
        if not root.is_dir():
            raise StateChangeError(f"Video root {root} is not a folder; pass existing folders to --video-roots.")
    if args.workers < 1:
        raise StateChangeError(f"--workers must be at least 1, got {args.workers}.")
    try:
        quality = parse_quality(args.quality)
    except ValueError as error:
        raise StateChangeError(f"--quality must be a JPEG quality from 1 to 95 or {LOSSLESS}, "
                               f"got {args.quality!r}.") from error
    if args.dataset_root is not None and not args.dataset_root.is_dir():
        raise StateChangeError(f"Dataset root {args.dataset_root} is not a folder; pass the dataset's folder "
                               "(holding annotations/) to --dataset-root.")
    lossless_keys = annotation_files(args.dataset_root / "annotations") if args.dataset_root else {}
    videos = find_videos(args.video_roots)
    summary = extract_videos(videos, args.cache, workers=args.workers, progress=not args.no_progress,
                             quality=quality, lossless_keys=lossless_keys, retry_failed=args.retry_failed)
    line = (
        f"extract: {len(videos)} videos: {summary.done} extracted, {summary.skipped} already cached, "
        f"{summary.failed} failed"
    )
    if summary.failed:
        line += f" (listed in {args.cache / FAILURES_FILE})"
    if summary.not_retried:
        line += f"; {summary.not_retried} of them failed before and are unchanged: not tried again (--retry-failed)"
    if summary.partial:
        line += (f"; {len(summary.partial)} cached but ending early, probably cut off (listed as partial in "
                 f"{args.cache / FAILURES_FILE})")
    print(line)
    for _, message in summary.partial:
        print(f"extract: {message}")
    for entry in summary.damaged:
        print(f"extract: rebuilt the damaged cache entry {entry} (its images did not match their checksum)")
    nothing_extracted = summary.done == 0 and summary.skipped == 0
    return 1 if nothing_extracted and summary.failed else 0
