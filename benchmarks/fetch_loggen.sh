#!/usr/bin/env bash
# Unpack syslog-ng's `loggen` (the native ceiling in bench_syslog.py) without installing it.
#
# `apt-get install syslog-ng-core` conflicts with rsyslog, which the tests need, so this
# downloads the Debian package and extracts it into a cache directory instead; loggen runs
# from there with LD_LIBRARY_PATH and SYSLOGNG_PREFIX set (bench_syslog.py does that).
# Prints the loggen path. Safe to run again.
set -euo pipefail

dest="${XDG_CACHE_HOME:-$HOME/.cache}/xavyo-siem/syslog-ng"
loggen="$dest/usr/bin/loggen"
if [ ! -x "$loggen" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  chmod 777 "$work"  # apt's download user must be able to write here
  (cd "$work" && apt-get download syslog-ng-core >/dev/null 2>&1) || {
    [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1
    (cd "$work" && apt-get download syslog-ng-core >/dev/null)
  }
  mkdir -p "$dest"
  dpkg-deb -x "$work"/syslog-ng-core_*.deb "$dest"
fi
echo "$loggen"
