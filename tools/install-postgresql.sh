#!/usr/bin/env bash
# Installs Debian's postgresql package (server binaries: initdb, pg_ctl, postgres)
# when missing. The store, worker and chaos tests start a throwaway cluster with
# them (tests/pg_cluster.py): initdb into a temporary directory, pg_ctl on a free
# loopback port, as the unprivileged user `nobody` when run as root. The package's
# own cluster is not needed: the script stops it if the package started one.
# Without root (or password-less sudo) it says so and carries on: those tests
# then skip with a reason, except under CI (CI set), where they fail instead.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "note: PostgreSQL is not installed and this user cannot install it;" >&2
    echo "      install Debian's 'postgresql' package to run the PostgreSQL tests." >&2
    exit 0
  fi
fi
$sudo apt-get update
# policy-rc.d 101: the package installs without starting its default cluster
# (the tests run their own; an idle server would only take memory).
policy=/usr/sbin/policy-rc.d
created=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  created=1
fi
status=0
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends postgresql || status=$?
if [ -n "$created" ]; then
  $sudo rm -f "$policy"
fi
exit "$status"
