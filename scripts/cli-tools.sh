#!/usr/bin/env bash
# The command-line programs tests drive: tmux (`chatd chat` runs in it) and curl (the
# README's curl snippets). Installs the Debian packages of those absent. Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
for tool in tmux curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
apt_install cli-tools.sh "${missing[*]}" "${missing[@]}"
