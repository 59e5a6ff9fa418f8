#!/usr/bin/env bash
# Screenshot the audit report in headless Chromium (offline: no network features, a throwaway profile).
#   scripts/screenshot_report.sh [OUT=out/demo] [PNG=<OUT>/reports/index.png] [HEIGHT=4000]
set -euo pipefail
out=${1:-out/demo}
png=${2:-$out/reports/index.png}
height=${3:-4000}
html=$(cd "$out/reports" && pwd)/index.html
[ -f "$html" ] || { echo "no report at $html; run 'make report OUT=$out' first" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "chromium not found: apt-get install -y chromium (make install tries)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --screenshot="$png" --window-size=1400,"$height" \
  "file://$html" 2>/dev/null
echo "screenshot: $png"
