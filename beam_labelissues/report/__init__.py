"""``report.html``: a self-contained page of what a run found, built from its output directory.

Needs nothing beyond the package itself: the figures are inline SVG written by
hand and the issues table is sorted and filtered by an inline script. It runs
where the pipeline was launched, after the run, and reads only summary.json, the
``label_issues`` files and the small health files (see ``report.data``), plus a
human review file and local image files for thumbnails when asked.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

from beam_labelissues.io import outputs
from beam_labelissues.report.data import SHOWN_ISSUES, TOP_ISSUES, ReportData
from beam_labelissues.report.html import SECTIONS, build_report_html as _build_page

HumanReviewArg = Union[str, Dict[int, dict], None]


def build_report_html(output_dir: str, class_names: Optional[Sequence[str]] = None,
                      human_review: HumanReviewArg = None) -> str:
    """The report of the finished run in ``output_dir`` as an HTML string."""
    return _build_page(ReportData.read(output_dir, class_names, human_review))


def write_report_page(report: ReportData) -> str:
    """Writes ``report.html`` for data already read (through a temporary name); returns its path."""
    page = _build_page(report).encode("utf-8")
    return outputs.write_then_rename(report.output_dir, outputs.REPORT_FILE, "text/html", lambda h: h.write(page))


def write_report(output_dir: str, class_names: Optional[Sequence[str]] = None,
                 human_review: HumanReviewArg = None) -> str:
    """Reads a finished run's outputs and writes its ``report.html``; returns the path.

    ``class_names`` overrides the names recorded in summary.json; ``human_review``
    (a ``*_mturk.json`` path) adds how the issues fare against that review.
    """
    return write_report_page(ReportData.read(output_dir, class_names, human_review))


__all__ = ["SECTIONS", "SHOWN_ISSUES", "TOP_ISSUES", "ReportData", "build_report_html", "write_report",
           "write_report_page"]
