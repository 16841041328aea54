"""Seeing a curation: the run manifest and the report page.

- :func:`build_manifest`, :func:`write_manifest`, :func:`run_with_manifest`:
  what a run used and produced (versions, command, parameters, models and
  their weight hashes, input and output hashes, rows per outcome, times),
  written beside the output as ``<output>.manifest.json``.
- :func:`write_report`, :func:`report_html`: one self-contained HTML page
  that shows a selection (outcomes, score distributions, threshold curve,
  embedding map, closest blocked pairs, manifest).
"""

from ._manifest import (
    build_manifest,
    frame_digest,
    manifest_path,
    path_digest,
    run_with_manifest,
    write_manifest,
)
from ._page import report_html, write_report

__all__ = [
    "build_manifest",
    "frame_digest",
    "manifest_path",
    "path_digest",
    "report_html",
    "run_with_manifest",
    "write_manifest",
    "write_report",
]
