#!/usr/bin/env bash
# Installs DFINITY's own clients, pinned in tools/clients/package-lock.json
# (@dfinity/agent 3.4.3, icp-cli 1.5.0), for the third-party conformance tests
# (tests/integration/test_official_clients.py). `make test` and .ci/run call it.
# Needs node and npm; without them, or when the npm registry cannot be reached,
# it says so and carries on: those tests then skip with a reason, except under
# CI (CI set), where this script and those tests fail instead.
set -euo pipefail
cd "$(dirname "$0")/clients"
# The lock file as last installed: nothing to do while it is unchanged.
stamp=node_modules/.installed-package-lock.json
if cmp -s package-lock.json "$stamp" 2>/dev/null; then
  exit 0
fi
give_up() {
  echo "note: $1; the official-client tests will skip (under CI: fail)." >&2
  if [ -n "${CI:-}" ]; then
    exit 1
  fi
  exit 0
}
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  give_up "node/npm are missing: install Node.js >= 20"
fi
if ! npm ci --no-audit --no-fund --loglevel=error; then
  give_up "npm ci failed in tools/clients (is the npm registry reachable?)"
fi
cp package-lock.json "$stamp"
