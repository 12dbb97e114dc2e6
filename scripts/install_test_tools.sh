#!/usr/bin/env bash
# System tools some tests use, from Debian's packages:
# - pdftotext/pdftoppm (poppler-utils) to read every page of the rendered PDF report;
# - chromium, the real browser the survey's end-to-end test drives (through the playwright Python
#   package of the `test` extra, with this Chromium: playwright's own browser downloads are not used).
# Tests that need them skip with a reason when they are absent; CI installs them so those tests run.
# Best effort: no network, no root -> skip quietly.
set -u
missing=()
command -v pdftotext >/dev/null 2>&1 || missing+=(poppler-utils)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 \
    || echo "note: ${missing[*]} could not be installed; the PDF page and browser tests will skip" >&2
fi
exit 0
