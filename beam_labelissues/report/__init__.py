"""``report.html``: a self-contained page of what a run found, built from its output directory.

Needs matplotlib (``pip install 'beam-labelissues[report]'``). It runs where the
pipeline was launched, after the run, and reads only summary.json and the
``label_issues`` files (see ``report.data``).
"""

from __future__ import annotations

from typing import Optional, Sequence

from beam_labelissues.io import outputs
from beam_labelissues.report.data import TOP_ISSUES, ReportData


def have_matplotlib() -> bool:
    """True when the ``report`` extra is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def build_report_html(output_dir: str, class_names: Optional[Sequence[str]] = None) -> str:
    """The report of the finished run in ``output_dir`` as an HTML string."""
    from beam_labelissues.report.html import build_report_html as build

    return build(ReportData.read(output_dir, class_names))


def write_report_page(report: ReportData) -> str:
    """Writes ``report.html`` for data already read (through a temporary name); returns its path."""
    from beam_labelissues.report.html import build_report_html as build

    page = build(report).encode("utf-8")
    return outputs.write_then_rename(report.output_dir, outputs.REPORT_FILE, "text/html", lambda h: h.write(page))


def write_report(output_dir: str, class_names: Optional[Sequence[str]] = None) -> str:
    """Reads a finished run's outputs and writes its ``report.html``; returns the path.

    ``class_names`` overrides the names recorded in summary.json.
    """
    return write_report_page(ReportData.read(output_dir, class_names))


__all__ = ["TOP_ISSUES", "ReportData", "build_report_html", "have_matplotlib", "write_report", "write_report_page"]
