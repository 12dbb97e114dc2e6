"""The risk report a compliance reviewer signs off on: HTML, PDF and results.json.

>>> from fvr_audit.report import ReportFormat
>>> sorted(f.value for f in ReportFormat)
['html', 'json', 'pdf']
"""

from fvr_audit.report.formats import FORMATTERS, Formatter, ReportDocument, ReportFormat
from fvr_audit.report.images import REDACT_GRID, ReportImages, pixelate
from fvr_audit.report.render import TEMPLATES_ENV, render_html, render_report, templates_dir

__all__ = [
    "FORMATTERS",
    "REDACT_GRID",
    "TEMPLATES_ENV",
    "Formatter",
    "ReportDocument",
    "ReportFormat",
    "ReportImages",
    "pixelate",
    "render_html",
    "render_report",
    "templates_dir",
]
