#!/usr/bin/env bash
# Installs DFINITY's own clients, pinned in tools/clients/package-lock.json
# (@dfinity/agent, icp-cli), for the third-party conformance tests
# (tests/integration/test_official_clients.py). Needs node and npm; without
# them it says so and carries on: those tests then skip with a reason, except
# under CI (CI set), where they fail instead.
set -euo pipefail
cd "$(dirname "$0")/clients"
# The lock file as last installed: nothing to do while it is unchanged.
stamp=node_modules/.installed-package-lock.json
if cmp -s package-lock.json "$stamp" 2>/dev/null; then
  exit 0
fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "note: node/npm are missing; install Node.js >= 20 to run the official-client tests." >&2
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
