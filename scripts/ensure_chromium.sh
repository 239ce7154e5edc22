#!/bin/sh
# Best effort: make headless Chromium available for the report's browser test (tests/test_report.py).
# Never fails the build: where Chromium cannot be installed, it says so and that one test skips.
for name in chromium chromium-browser google-chrome; do
    command -v "$name" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: chromium not found and not installable here (needs root and apt-get);" \
        "the report's browser test will be skipped" >&2
    exit 0
fi
echo "installing chromium (Debian package) for the report's browser test..." >&2
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; then
    echo "chromium installed" >&2
else
    echo "note: could not install chromium (no mirror?); the report's browser test will be" \
        "skipped" >&2
fi
exit 0
