#!/usr/bin/env bash
# Installs Debian's prometheus package (prometheus + promtool) when missing.
# The deploy tests and the end-to-end scrape test need them. Without root (or
# password-less sudo) it says so and carries on: those tests then skip with a
# reason, except under CI (CI set), where they fail instead.
set -euo pipefail
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "note: prometheus/promtool are not installed and this user cannot install them;" >&2
    echo "      install Debian's 'prometheus' package to run the Prometheus tests." >&2
    exit 0
  fi
fi
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends prometheus
