"""Comparison reports across models: markdown + self-contained HTML with embedded plots."""

from .build import HTML_FILE, MD_FILE, ReportError, build_report, entries_from_dirs
from .sweep import build_sweep_report
from .tables import results_table

__all__ = ["HTML_FILE", "MD_FILE", "ReportError", "build_report", "build_sweep_report", "entries_from_dirs", "results_table"]
