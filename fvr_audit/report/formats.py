"""Report formats: each turns one audit's results into the bytes of one file (pip-audit style).

A format is a :class:`ReportFormat` member plus a :class:`Formatter` registered for it in
:data:`FORMATTERS`. Adding one (say ``csv``) means a new enum member, a ``Formatter`` subclass and a
registry entry; :func:`fvr_audit.report.render_report` needs no change.
"""

from __future__ import annotations

import abc
import base64
import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from enum import Enum

from fvr_audit.audit.results import AuditResults
from fvr_audit.report.images import ReportImages


class ReportFormat(str, Enum):
    """The files a report can be written as."""

    HTML = "html"
    PDF = "pdf"
    JSON = "json"

    @property
    def filename(self) -> str:
        """The file this format writes in the output folder."""
        return FORMATTERS[self].filename


@dataclass(frozen=True, eq=False)
class ReportDocument:
    """What every format renders from; the HTML is built once and shared (the PDF prints it)."""

    results: AuditResults
    images: ReportImages | None = None
    redact: bool = False
    #: A survey analysis (Metric 2), shown as its own section when given.
    metric2: dict | None = None

    @functools.cached_property
    def html(self) -> str:
        from fvr_audit.report.render import render_html

        return render_html(self.results, images=self.images, redact=self.redact, metric2=self.metric2)


class Formatter(abc.ABC):
    """Turns a :class:`ReportDocument` into the bytes of one file."""

    #: File name in the output folder.
    filename: str

    @abc.abstractmethod
    def render(self, document: ReportDocument) -> bytes: ...


class JsonFormatter(Formatter):
    """``results.json``: :meth:`AuditResults.to_json`, schema ``fvr-audit/results`` v1 (never redacted)."""

    filename = "results.json"

    def render(self, document: ReportDocument) -> bytes:
        return document.results.to_json().encode("utf-8")


class HtmlFormatter(Formatter):
    """``report.html``: one self-contained file (inline CSS, SVG plots, data-URI images)."""

    filename = "report.html"

    def render(self, document: ReportDocument) -> bytes:
        return document.html.encode("utf-8")


class PdfFormatter(Formatter):
    """``report.pdf``: the same HTML, printed on A4 by WeasyPrint, with every outside fetch refused.

    The HTML's image data URIs are swapped for short in-memory references before WeasyPrint parses
    it (its HTML tokenizer crawls through megabytes of base64 otherwise); the fetcher serves
    those references from memory and ``data:`` URIs, and refuses everything else.
    """

    filename = "report.pdf"

    def render(self, document: ReportDocument) -> bytes:
        import weasyprint

        # WeasyPrint and fontTools log every font subset and unsupported CSS property at INFO/WARNING.
        for name in ("weasyprint", "fontTools"):
            logging.getLogger(name).setLevel(logging.ERROR)
        images: dict[str, tuple[str, str]] = {}

        def swap(match: re.Match) -> str:
            mime, payload = match.group(1), match.group(2)
            key = f"{IMAGE_SCHEME}:{hashlib.sha256(payload.encode('ascii')).hexdigest()[:32]}"
            images[key] = (mime, payload)  # identical images share one key, and one PDF object
            return f'src="{key}"'

        html = _IMAGE_DATA_URI.sub(swap, document.html)
        page = weasyprint.HTML(string=html, base_url=None, url_fetcher=offline_url_fetcher(images))
        return page.write_pdf()


#: In-memory image references inside the PDF renderer (never written anywhere).
IMAGE_SCHEME = "fvr-report-image"
_IMAGE_DATA_URI = re.compile(r'src="data:(image/(?:png|jpeg));base64,([A-Za-z0-9+/=]+)"')


def offline_url_fetcher(images: dict[str, tuple[str, str]] | None = None):
    """A WeasyPrint URL fetcher that never reaches the network or the disk.

    It serves ``images`` (reference -> (MIME type, base64 data)) and ``data:`` URIs, and refuses anything else.
    """
    images = dict(images or {})
    try:
        from weasyprint.urls import URLFetcher, URLFetcherResponse  # WeasyPrint >= 70: a class
    except ImportError:  # WeasyPrint 62-69: a plain function
        import weasyprint

        def fetch(url: str, *args, **kwargs):
            if url in images:
                mime, payload = images[url]
                return {"string": base64.b64decode(payload), "mime_type": mime}
            if url.startswith("data:"):
                return weasyprint.default_url_fetcher(url, *args, **kwargs)
            raise ValueError(f"report PDF: refusing to fetch {url[:80]!r} (reports are self-contained)")

        return fetch

    class OfflineFetcher(URLFetcher):
        def fetch(self, url, headers=None):
            if url in images:
                mime, payload = images[url]
                return URLFetcherResponse(url, base64.b64decode(payload), {"Content-Type": mime})
            return super().fetch(url, headers)

    return OfflineFetcher(allowed_protocols={"data"})


FORMATTERS: dict[ReportFormat, Formatter] = {
    ReportFormat.HTML: HtmlFormatter(),
    ReportFormat.PDF: PdfFormatter(),
    ReportFormat.JSON: JsonFormatter(),
}
