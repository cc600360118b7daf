"""``statechange download``: backbone weights (``--weights NAME``) or the dataset's videos (yt-dlp)."""

from __future__ import annotations

import argparse
from pathlib import Path

from statechange.cli._common import add_subcommand
from statechange.data.changeit import SPLIT_ALL, SPLITS
from statechange.data.video_download import VideoDownloadOptions
from statechange.download import CACHE_ENV, WEIGHTS
from statechange.errors import StateChangeError

EXAMPLES = """examples:
  statechange download --weights vit-l-14                  # OpenAI's ViT-L-14.pt into the download cache
  statechange download --output videos                     # every ChangeIt video (train and test), 480p
  statechange download --output videos --split test --categories bacon apple
  statechange download --output videos --url-template 'https://mirror.example/{category}/{id}.mp4'
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = VideoDownloadOptions()
    weights = "; ".join(f"{spec.name}: {spec.description}" for spec in WEIGHTS.values())
    parser = add_subcommand(
        subparsers, "download",
        help="download CLIP weights (--weights NAME) or ChangeIt's videos (--output DIR)",
        description=(
            "With --weights NAME: download, verify and keep backbone weights (resumable; a file that does not "
            f"verify is removed). They go to the download cache (${CACHE_ENV}, else ~/.cache/statechange) unless "
            "--output is given; `statechange train` finds them there without --clip-weights. "
            f"Weights known: {weights}. "
            "Otherwise: download the videos listed in the dataset's videos/<category>.csv and annotations "
            "(ChangeIt's built-in metadata unless --dataset-root) with yt-dlp into OUTPUT/<category>/<id>.<ext>; "
            "re-running fetches only what is missing. Videos that are gone for good are listed in "
            "OUTPUT/missing.csv and not tried again unless --retry-missing."
        ),
        epilog=EXAMPLES,
    )
    parser.add_argument("--output", type=Path, default=None, metavar="DIR",
                        help="videos: the video root to fill (required); weights: the folder to keep them in; "
                        "when not given with --weights, the download cache")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    weights_group = parser.add_argument_group("weights")
    weights_group.add_argument("--weights", choices=list(WEIGHTS), default=None, metavar="NAME",
                               help=f"weights to download ({', '.join(WEIGHTS)}); when not given, videos")
    weights_group.add_argument("--url", action="append", default=None, metavar="URL",
                               help="a mirror to use instead of the known URLs (repeatable; for weights of several "
                               "files, the folder URL ending in '/'); when not given, the known URLs in order")

    videos = parser.add_argument_group("videos")
    videos.add_argument("--dataset-root", type=Path, default=None, metavar="DIR",
                        help="dataset whose videos/<category>.csv and annotations list the ids; when not given, "
                        "ChangeIt's metadata built into statechange")
    videos.add_argument("--categories", nargs="+", default=None, metavar="NAMES|FILE",
                        help="only these categories (names separated by spaces or commas, or a FILE of one name per "
                        "line); when not given, every category of the dataset")
    videos.add_argument("--split", choices=SPLITS, default=SPLIT_ALL,
                        help="train (listed, not annotated), test (annotated) or all")
    videos.add_argument("--workers", type=int, default=defaults.workers, metavar="N", help="videos downloaded at once")
    videos.add_argument("--url-template", default=defaults.url_template, metavar="TEMPLATE",
                        help="where a video comes from, with {id} and optionally {category}")
    videos.add_argument("--max-height", type=int, default=defaults.max_height, metavar="PIXELS",
                        help="highest resolution to download (the authors' copies are 480p)")
    videos.add_argument("--with-audio", action="store_true",
                        help="also download the audio stream (merging needs ffmpeg); otherwise video only")
    videos.add_argument("--retry-missing", action="store_true",
                        help="try again the videos listed in OUTPUT/missing.csv")
    videos.add_argument("--retries", type=int, default=defaults.retries, metavar="N",
                        help="further attempts after a transient error")
    videos.add_argument("--backoff", type=float, default=defaults.backoff_seconds, metavar="SECONDS",
                        help="wait before the first retry, doubled for each next one")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.weights is not None:
        return run_weights(args)
    if args.output is None:
        raise StateChangeError(
            "Nothing to download: pass --weights NAME for backbone weights, or --output DIR for the dataset's videos."
        )
    return run_videos(args)


def run_weights(args: argparse.Namespace) -> int:
    from statechange.download import default_cache_dir, download_weights

    path = download_weights(args.weights, args.output, args.url, progress=not args.no_progress)
    in_cache = args.output is None or Path(args.output).resolve() == default_cache_dir().resolve()
    hint = "train finds them there without --clip-weights" if in_cache else f"pass --clip-weights {path}"
    print(f"Weights {args.weights}: {path} (verified; {hint}).")
    return 0


def run_videos(args: argparse.Namespace) -> int:
    from statechange.data.changeit import changeit_root, listed_video_ids, parse_categories
    from statechange.data.video_download import download_videos

    if args.url is not None:
        raise StateChangeError("--url is for --weights; for videos pass --url-template with {id} (and {category}).")
    dataset_root = args.dataset_root if args.dataset_root is not None else changeit_root()
    ids = listed_video_ids(dataset_root, parse_categories(args.categories), args.split)
    source = args.dataset_root or "ChangeIt's metadata built into statechange"
    print(f"Downloading {sum(map(len, ids.values()))} videos of {len(ids)} categories ({args.split}; ids from "
          f"{source}) into {args.output}.")
    options = VideoDownloadOptions(
        url_template=args.url_template, max_height=args.max_height, with_audio=args.with_audio,
        workers=args.workers, retries=args.retries, backoff_seconds=args.backoff,
        retry_missing=args.retry_missing, progress=not args.no_progress,
    )
    summary = download_videos(ids, args.output, options)
    print(summary.format())
    return 1 if summary.total().failed else 0
