#!/usr/bin/env bash
# The command-line programs tests drive: tmux (`chatd chat` runs in it) and curl (the
# README's curl snippets). Installs the Debian packages of those absent. Idempotent.
set -euo pipefail

missing=()
for tool in tmux curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "cli-tools.sh: ${missing[*]} not installed; run as root to install" >&2
    exit 1
fi
echo "cli-tools.sh: installing ${missing[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq "${missing[@]}" >&2
