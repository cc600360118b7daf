"""The ``statechange`` command. Each public module of this package is one subcommand: it defines
``register(subparsers)``, adds its arguments (laid out by ``_common``), and sets ``func`` to a function
that only turns the parsed arguments into a call of the library API. Subcommand modules import the
library inside ``func``, so that building the parser (``statechange --help``) loads neither torch nor
numpy. Nothing outside this package imports it."""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys

from statechange import __version__
from statechange.errors import StateChangeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="statechange",
        description="Learn and find object state changes (initial state, action, end state) in videos.",
    )
    parser.add_argument("--version", action="version", version=f"statechange {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue  # shared helpers, not a subcommand
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def release_spelling(argv: list[str]) -> list[str]:
    """Options as the release spelled them (``--video_roots``, ``--local_batch_size``) in our spelling
    (``--video-roots``): every long option is accepted both ways. Values are left as they are."""
    spelled = []
    for position, word in enumerate(argv):
        if word == "--":
            return spelled + argv[position:]
        if word.startswith("--") and "_" in word.split("=", 1)[0]:
            name, equals, value = word.partition("=")
            word = name.replace("_", "-") + equals + value
        spelled.append(word)
    return spelled


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(release_spelling(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StateChangeError as error:
        print(f"statechange {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # disk full, read-only folder, name too long...: one sentence, not a traceback
        print(f"statechange {args.command}: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"statechange {args.command}: interrupted.", file=sys.stderr)
        return 130


_OS_ERROR_FIXES = {
    errno.ENOSPC: "free some space there or choose a folder on another disk",
    errno.EDQUOT: "free some space there or choose a folder on another disk",
    errno.EROFS: "choose a folder on a writable disk",
    errno.EACCES: "choose a folder you may write to, or change its permissions",
    errno.EPERM: "choose a folder you may write to, or change its permissions",
    errno.ENAMETOOLONG: "shorten the file or folder name",
    errno.ENOENT: "check the path",
}


def describe_os_error(error: OSError) -> str:
    """One sentence for a failed file operation: what failed, on which file, and the fix."""
    where = f" ({error.filename})" if error.filename else ""
    fix = _OS_ERROR_FIXES.get(error.errno, "check the path and the disk")
    return f"{error.strerror or error}{where}: {fix}."
