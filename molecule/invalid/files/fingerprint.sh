#!/usr/bin/env bash
# Prints a fingerprint of everything the nightly_logout role could change on this host: two runs print
# the same lines only if nothing the role touches changed in between (molecule/invalid).
set -euo pipefail

main() {
  # What exists where the role writes, with owner, mode, size and modification time (a rewrite of a
  # file with the same content still shows). __pycache__ is left out: checking a virtualenv runs python.
  find /etc /opt /srv /home /var/spool/cron /var/mail -xdev -name __pycache__ -prune -o \
    -printf '%p %u:%g %m %s %T@\n' | sort
  # Nothing new at the top of the file system (a relative path resolved against /).
  find / -mindepth 1 -maxdepth 1 -printf '%p\n' | sort
  # The content of what the role writes: crontabs, logrotate entries, systemd units, the wrapper and the
  # site's scripts, the log folders and the lock; and root's folders the hostile cases' links point at.
  local dirs=() dir
  for dir in /var/spool/cron/crontabs /etc/logrotate.d /etc/systemd/system /srv/lcstats/scripts /home/*/logs \
    /etc/nightly-logout-trap /opt/nightly-logout-trap; do
    if [[ -d "${dir}" ]]; then dirs+=("${dir}"); fi
  done
  find "${dirs[@]}" -xdev -type f -print0 | sort -z | xargs -0 --no-run-if-empty sha256sum
  # The packages (the mail hook installs some).
  dpkg-query --show --showformat='${db:Status-Abbrev}${Package} ${Version}\n'
}

main "$@"
