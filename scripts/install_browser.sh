#!/usr/bin/env bash
# Debian's chromium for the browser test (never a downloaded browser). Skipped when present, or when
# apt-get cannot run (not root): the browser test then skips with a message.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "[install_browser] /usr/bin/chromium missing and apt-get unavailable: the browser test will be skipped"
  exit 0
fi
echo "[install_browser] installing Debian's chromium"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
  || echo "[install_browser] apt-get failed: the browser test will be skipped"
