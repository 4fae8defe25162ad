"""The ``glmasr-live`` command. Bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from glmasr_live import __version__
from glmasr_live.commands import COMMANDS
from glmasr_live.errors import GlmAsrLiveError

log = logging.getLogger("glmasr_live")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints the whole usage; a user wants the one line that says what was wrong,
        # starting like every other error of the command (a subcommand's own prog would say
        # "glmasr-live transcribe: error:"), with the subcommand named in it.
        command = self.prog.removeprefix("glmasr-live").strip()
        where = f" ({command} --help)" if command else ""
        self.exit(2, f"glmasr-live: error: {message}{where}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="glmasr-live",
        description="Real-time captions from live speech with GLM-ASR. "
        "Without a subcommand: live captions from the microphone.",
    )
    parser.add_argument("--version", action="version", version=f"glmasr-live {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    live = None
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"glmasr_live.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"glmasr_live.commands.{name}":
                continue
            raise
        mod.register(sub)
    try:
        live = importlib.import_module("glmasr_live.commands.live")
    except ModuleNotFoundError as e:
        if e.name != "glmasr_live.commands.live":
            raise
    if live is not None:
        live.add_arguments(parser)
        parser.set_defaults(func=live.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    # Until a front end installs its graceful handlers (after the model is loaded), SIGTERM
    # ends the process like Ctrl-C: one line, exit 130, no traceback.
    # The caller's handler comes back on return (``main`` also runs inside other programs and
    # the tests, whose forked children would otherwise inherit it).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if func is None:
            parser.print_help()
            return 2
        return int(func(args) or 0)
    except GlmAsrLiveError as e:
        print(f"glmasr-live: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def entry() -> None:
    """Console-script entry: run, flush, and leave without the interpreter's slow teardown.

    Everything that matters is flushed and fsynced before ``main`` returns (transcripts,
    websocket closes). Tearing down torch, tokenizers and their thread pools afterwards took
    5-7 s on a busy machine, which broke the "exit within 5 s of SIGTERM" promise.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
