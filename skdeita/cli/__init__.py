"""The ``skdeita`` command line: one module per subcommand.

Every subcommand checks its options, its input's columns and values, and its
output path before any model loads; a user error is one line on stderr and
exit code 2, never a traceback. Outputs are written atomically, and SIGINT,
SIGTERM and SIGHUP leave no partial file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import textwrap

from .. import __version__
from ..exceptions import InputChangedError, ScoringError
from ..utils._progress import progress_enabled
from . import _cache, _curate, _demo, _rank, _report, _select, _threshold
from ._console import bars_off, warnings_as_lines
from ._help import HelpFormatter
from ._io import CLIError
from ._terms import in_cli_terms

# ImportError: a missing extra ("pip install 'skdeita[scoring]'"); OSError
# includes ModelNotFoundError.
USAGE_ERRORS = (CLIError, ValueError, TypeError, KeyError, OSError, ImportError)
_SUBCOMMANDS = (_select, _curate, _rank, _threshold, _report, _demo)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line and exit code 2, and help
    pages that state every option's default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="skdeita", description="Curate instruction-tuning data the DEITA way.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in _SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def _terminate(signum, frame):
    # Unwind through ``finally`` blocks so temporary files are removed.
    raise SystemExit(128 + signum)


def _print_error(exc: BaseException, command: str | None = None) -> None:
    """One line, in command-line terms (options, "the input")."""
    message = in_cli_terms(str(exc), command) or type(exc).__name__
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
        with warnings_as_lines(args.command), _bars(args):
            return args.run(args)
    except USAGE_ERRORS as exc:
        _print_error(exc, args.command)
        return 2
    except (ScoringError, InputChangedError) as exc:  # not usage errors: the run failed
        _print_error(exc, args.command)
        return 1
    except KeyboardInterrupt:
        print("skdeita: interrupted; no output written", file=sys.stderr)
        return 130


def _bars(args):
    """Bars follow ``--no-progress`` and the terminal, model weight loading
    included (the estimators' own bars follow ``show_progress_bar``)."""
    shown = progress_enabled(False if getattr(args, "no_progress", False) else None)
    return contextlib.nullcontext() if shown else bars_off()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
