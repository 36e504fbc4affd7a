#!/usr/bin/env bash
# Headless Chromium for the browser tests (Debian's package; Playwright's own download
# cannot run here). Idempotent: installs it when missing, then prints the binary's path.
#
#   scripts/chromium.sh    print the path (CHATD_TEST_CHROMIUM for tests), installing first
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_chromium() {
    local name
    for name in chromium chromium-browser; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return
        fi
    done
}

BIN="$(find_chromium)"
if [ -z "$BIN" ]; then
    apt_install chromium.sh Chromium chromium
    BIN="$(find_chromium)"
fi
if [ -z "$BIN" ]; then
    echo "chromium.sh: no chromium binary after installing the package" >&2
    exit 1
fi
echo "$BIN"
