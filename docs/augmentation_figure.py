"""Draw docs/augmentation.png: frames of one video (top row), then one augmented draw per row.

Each row below the top is one ``sample_augmentation`` draw of the paper's policy, applied with
``augment_frames`` to the same frames: the transform is the same across a row (one per video) and
changes between rows. The video is a synthetic ChangeIt-format video, decoded at 1 fps to 398x224.

    .venv/bin/python docs/augmentation_figure.py [--output docs/augmentation.png] [--rows 5]
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from statechange.config import AugmentConfig
from statechange.data.augment import augment_frames, sample_augmentation
from statechange.data.decode import decode_video
from statechange.data.synth import make_synthetic_dataset

SHOWN_LABELS = (1, 2, 2, 3)  # annotation codes of the frames shown: initial, action, action, end state
LABEL_NAMES = {1: "initial state", 2: "action", 3: "end state"}
CAPTION_CHARACTERS = 95  # a draw's description wraps to the width of its row
FIGURE_DPI = 96  # with the font sizes below: captions about 13 px high as shown in the README


def example_frames(seed: int) -> tuple[torch.Tensor, list[int]]:
    """uint8 [4, 3, 224, 398] frames of one synthetic video (initial state, action x2, end state)
    and their seconds."""
    with tempfile.TemporaryDirectory() as folder:
        dataset = make_synthetic_dataset(folder, n_categories=1, n_train_videos=1, n_test_videos=0, seed=seed)
        video = dataset.videos[0]
        frames = decode_video(video.path)  # [T, H, W, 3]
    labels = np.asarray(video.labels[: len(frames)])
    seconds = []
    for code in dict.fromkeys(SHOWN_LABELS):  # first, middle or last second of each shown label
        where = np.flatnonzero(labels == code)
        picks = np.linspace(0, len(where) - 1, SHOWN_LABELS.count(code) + 2)[1:-1].round().astype(int)
        seconds.extend(int(where[i]) for i in picks)
    return torch.from_numpy(frames[seconds]).permute(0, 3, 1, 2).contiguous(), seconds


def draw_figure(frames: torch.Tensor, seconds: list[int], n_rows: int, output: Path) -> None:
    config = AugmentConfig(enabled=True)
    n_columns = frames.shape[0]
    figure, axes = plt.subplots(1 + n_rows, n_columns, figsize=(2.6 * n_columns, 1.95 * (1 + n_rows)),
                                squeeze=False, gridspec_kw={"hspace": 0.8, "wspace": 0.04})
    for column, (second, code) in enumerate(zip(seconds, SHOWN_LABELS, strict=True)):
        axes[0, column].imshow(frames[column].permute(1, 2, 0).numpy())
        axes[0, column].set_title(f"second {second}\n{LABEL_NAMES[code]} (398x224)", fontsize=10)
    figure.suptitle("One random transform per video: each row is one draw, the same on all its frames",
                    fontsize=12, y=0.93)
    for row in range(1, 1 + n_rows):
        augmentation = sample_augmentation(config, torch.Generator().manual_seed(row))
        augmented = augment_frames(frames, augmentation)  # [n, 3, 224, 224]
        for column in range(n_columns):
            axes[row, column].imshow(augmented[column].permute(1, 2, 0).numpy())
        caption = textwrap.fill(f"draw {row}: {augmentation.describe()}", CAPTION_CHARACTERS)
        axes[row, 0].text(0, 1.05, caption, transform=axes[row, 0].transAxes, fontsize=9.5, va="bottom")
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.savefig(output, dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(figure)
    with Image.open(output) as image:  # 256 colours: a third of the size, no visible change at this scale
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("augmentation.png"))
    parser.add_argument("--rows", type=int, default=5, help="augmented draws (seeds 1..rows)")
    parser.add_argument("--video-seed", type=int, default=3, help="seed of the synthetic video")
    args = parser.parse_args()
    frames, seconds = example_frames(args.video_seed)
    draw_figure(frames, seconds, args.rows, args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
