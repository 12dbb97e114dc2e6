#!/usr/bin/env bash
# System tools some tests use, from Debian's packages: pdftotext/pdftoppm (poppler-utils) to read
# every page of the rendered PDF report. Tests that need them skip with a reason when they are
# absent; CI installs them so those tests run. Best effort: no network, no root -> skip quietly.
set -u
if command -v pdftotext >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils) >/dev/null 2>&1 \
    || echo "note: poppler-utils could not be installed; the PDF page tests will skip" >&2
fi
exit 0
