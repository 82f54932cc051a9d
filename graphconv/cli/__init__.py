"""The ``graphconv`` command: one module per verb, each with ``add_parser(verbs)``.

Exit status: 0 fine, 1 a shape does not fit (``check``: a check fails), 2 a bad spec, bad arguments, or output
that cannot be written (a full disk, a closed pipe), 130 interrupted (Ctrl-C). A bad spec prints a one-paragraph
message with file, line, column and a caret; every other failure one line — never a traceback (``--debug``
shows one).
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import Sequence

from graphconv.cli import check, compile, export, ops, run, show
from graphconv.cli.common import EXIT_INTERRUPTED, EXIT_SHAPE, EXIT_SPEC
from graphconv.errors import ShapeError
from graphconv.errors import SpecError

VERBS = [run, show, check, ops, compile, export]
OUTPUT_ERRORS = {errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EFBIG, errno.EDQUOT, errno.EBADF}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphconv", description="Computation-graph diagrams → PyTorch ops")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb in VERBS:
        verb.add_parser(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; every way it can end is an exit status (see the module's doc)."""
    _escape_unencodable_output()
    args = argparse.Namespace(verb=None, debug=False)
    try:
        args = build_parser().parse_args(argv)
        status = args.handler(args)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not as Python exits
        return status
    except SpecError as error:
        if args.debug:
            raise
        print(f"graphconv {args.verb}: {error}", file=sys.stderr)
        return EXIT_SHAPE if isinstance(error, ShapeError) else EXIT_SPEC
    except KeyboardInterrupt:
        if args.debug:
            raise
        return _fail(args, "interrupted", EXIT_INTERRUPTED)
    except OSError as error:
        if args.debug:
            raise
        if error.errno not in OUTPUT_ERRORS:
            return _fail(args, str(error), EXIT_SPEC)
        _drop_output()
        return _fail(args, f"cannot write the output: {error.strerror or error}", EXIT_SPEC)
    except MemoryError:
        if args.debug:
            raise
        return _fail(args, "out of memory", EXIT_SPEC)


def _fail(args: argparse.Namespace, message: str, status: int) -> int:
    """One line on stderr, ``graphconv VERB: message``; the status to exit with."""
    prefix = f"graphconv {args.verb}" if args.verb else "graphconv"
    try:
        print(f"{prefix}: {message}", file=sys.stderr)
    except OSError:  # stderr is gone too: the status is all that is left to say
        pass
    return status


def _escape_unencodable_output() -> None:
    """Write what the terminal's encoding cannot (a file name with undecodable bytes) as backslash escapes
    instead of failing half-way through the output."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


def _drop_output() -> None:
    """Point standard output at /dev/null: what is still buffered would fail again as Python exits, with a
    message of its own."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (captured output): nothing is flushed at exit
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, descriptor)
    os.close(null)


if __name__ == "__main__":
    sys.exit(main())
