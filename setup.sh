#!/usr/bin/env bash
# Set up this machine and schedule the nightly logout on it: Debian packages,
# the virtualenv and its requirements, the SQLite database, then the Ansible
# playbook for this host. Safe to run again. Extra arguments go to
# ansible-playbook, e.g. ./setup.sh -e nightly_logout_hour=3
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly REPO_DIR
readonly VENV_DIR="${REPO_DIR}/.venv"
# What the nightly job needs on this host besides Python.
readonly APT_PACKAGES=(cron logrotate python3-venv)
# Where Debian's cron keeps each user's crontab.
readonly CRONTAB_DIR=/var/spool/cron/crontabs
readonly CRON_JOB_MARKER="#Ansible: nightly_logout"

# shellcheck source=scripts/steps.sh
source "${REPO_DIR}/scripts/steps.sh"

migrate_database() {
  "${VENV_DIR}/bin/python" manage.py migrate --noinput
}

provision_host() {
  cd ansible
  ../.venv/bin/ansible-playbook playbook.yml "$@"
}

# Read back what the playbook scheduled, so what we print is what cron runs.
show_how_to_use() {
  local crontab user line command
  for crontab in "${CRONTAB_DIR}"/*; do
    [[ -f ${crontab} ]] || continue
    line=$(grep -A1 -x -F "${CRON_JOB_MARKER}" "${crontab}" | tail -n 1) || continue
    user=${crontab##*/}
    # The command is everything after the five schedule fields.
    command=$(sed -E 's/^([^ ]+ +){5}//' <<<"${line}")
    cat <<EOF

The nightly logout is scheduled for user ${user}. Its crontab line:
  ${line}
Log file:     $(grep -oE '>> *[^ ]+' <<<"${command}" | sed -E 's/^>> *//')
See it:       crontab -l -u ${user}
Run it now:   runuser -u ${user} -- sh -c '${command}'
Site:         ${VENV_DIR}/bin/python manage.py runserver  (then open http://127.0.0.1:8000/)
EOF
    return 0
  done
  echo "No crontab has the ${CRON_JOB_MARKER} entry: was the job state set to absent?" >&2
}

main() {
  cd "${REPO_DIR}"
  require_step "Install Debian packages" install_missing_apt_packages "${APT_PACKAGES[@]}"
  require_step "Install Python requirements" install_python_requirements "${VENV_DIR}" requirements.txt
  require_step "Migrate the SQLite database" migrate_database
  require_step "Provision this host" provision_host "$@"
  print_summary
  show_how_to_use
}

main "$@"
