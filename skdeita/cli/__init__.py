"""The ``skdeita`` command line: one module per subcommand.

Every subcommand checks its options, its input's columns and values, and its
output path before any model loads; a user error is one line on stderr and
exit code 2, never a traceback. Outputs are written atomically, and SIGINT,
SIGTERM and SIGHUP leave no partial file behind.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import textwrap

from ..exceptions import InputChangedError, ScoringError
from . import _cache, _curate, _demo, _rank, _report, _select, _threshold
from ._io import CLIError

# ImportError: a missing extra ("pip install 'skdeita[scoring]'"); OSError
# includes ModelNotFoundError.
USAGE_ERRORS = (CLIError, ValueError, TypeError, KeyError, OSError, ImportError)
_SUBCOMMANDS = (_select, _curate, _rank, _threshold, _report, _demo)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="skdeita", description="Curate instruction-tuning data the DEITA way.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in _SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def _terminate(signum, frame):
    # Unwind through ``finally`` blocks so temporary files are removed.
    raise SystemExit(128 + signum)


def _print_error(exc: BaseException) -> None:
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(textwrap.shorten(f"skdeita: error: {message}", 2000), file=sys.stderr)


class _StderrHandler(logging.Handler):
    """skdeita's log records as ``skdeita: ...`` lines on the *current* stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        if _cache.record(record):  # summed per step, printed after the run
            return
        print(f"skdeita: {record.getMessage()}", file=sys.stderr)


def _log_to_stderr() -> None:
    """Show skdeita's INFO records (each model's estimated memory before it
    loads) as one stderr line each; once per process."""
    logger = logging.getLogger("skdeita")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler(logging.INFO))
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skdeita`` console script."""
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):  # no SIGHUP on Windows
            signal.signal(getattr(signal, name), _terminate)
    try:
        return args.run(args)
    except USAGE_ERRORS as exc:
        _print_error(exc)
        return 2
    except (ScoringError, InputChangedError) as exc:  # not usage errors: the run failed
        _print_error(exc)
        return 1
    except KeyboardInterrupt:
        print("skdeita: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
