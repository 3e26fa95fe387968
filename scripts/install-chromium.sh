#!/usr/bin/env bash
# Install Debian's chromium for the browser test of the web page (tests/test_server_e2e.py).
# Does nothing when /usr/bin/chromium is already there; says why when it cannot install.
# Never fails the build: without chromium the browser test skips with the reason.
set -u

if [ -x /usr/bin/chromium ]; then
    echo "chromium: already installed ($(/usr/bin/chromium --version 2>/dev/null | head -n 1))"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: not installed and apt-get is not available here; the browser test will be skipped"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "chromium: not installed; run 'sudo apt-get install -y chromium' (needs root) or the browser test will be skipped"
    exit 0
fi
echo "chromium: installing with apt-get ..."
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "chromium: apt-get could not install it; the browser test will be skipped"
    exit 0
fi
echo "chromium: installed ($(/usr/bin/chromium --version 2>/dev/null | head -n 1))"
