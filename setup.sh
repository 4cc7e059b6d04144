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

# The site user the playbook scheduled the job for, as Ansible resolves it from
# the inventory and the -e/-i arguments that were given to the playbook.
site_user() {
  local args=()
  while (($#)); do
    case $1 in
      -e | --extra-vars | -i | --inventory)
        args+=("$1" "$2")
        shift 2
        ;;
      -e?* | --extra-vars=* | -i?* | --inventory=*)
        args+=("$1")
        shift
        ;;
      *) shift ;;
    esac
  done
  # --one-line output of ansible-core's own default callback: "localhost | SUCCESS => {json}".
  # (The json callback is in the full `ansible` package only, which requirements.txt does not install.)
  (
    cd ansible
    ../.venv/bin/ansible localhost --one-line -m ansible.builtin.debug -a 'var=nightly_logout_user' "${args[@]}"
  ) 2>/dev/null | "${VENV_DIR}/bin/python" -c \
    'import json, sys; print(json.loads(sys.stdin.read().split("=>", 1)[1])["nightly_logout_user"])'
}

# Read back what the playbook scheduled, so what we print is what cron runs.
show_how_to_use() {
  local user line command
  user=$(site_user "$@")
  line=$(crontab -l -u "${user}" 2>/dev/null | grep -A1 -x -F "${CRON_JOB_MARKER}" | tail -n 1) || true
  if [[ -z ${line} ]]; then
    echo "The crontab of ${user} has no \"${CRON_JOB_MARKER}\" entry: nightly_logout_state=absent, or"
    echo "another scheduler (systemd: systemctl list-timers nightly_logout_${user}.timer), or not the primary host."
    return 0
  fi
  # The command is everything after the five schedule fields. Run by hand it goes without --scheduled:
  # a scheduled run stands for the last scheduled time (and skips when that is done), a run now logs
  # everyone out now.
  command=$(sed -E 's/^([^ ]+ +){5}//' <<<"${line}")
  command=${command/ --scheduled / }
  cat <<EOF

The nightly logout is scheduled in the crontab of ${user}:
  ${line}
Log file:    $(grep -oE '>> *[^ ]+' <<<"${command}" | sed -E 's/^>> *//')
See it:      crontab -l -u ${user}
Run it now:  runuser -u ${user} -- sh -c '${command}'
The site:    .venv/bin/python manage.py runserver   (then open http://127.0.0.1:8000/)
EOF
}

main() {
  cd "${REPO_DIR}"
  require_step "Install Debian packages" install_missing_apt_packages "${APT_PACKAGES[@]}"
  require_step "Install Python requirements" install_python_requirements "${VENV_DIR}" requirements.txt
  require_step "Migrate the SQLite database" migrate_database
  require_step "Provision this host" provision_host "$@"
  print_summary
  show_how_to_use "$@"
}

main "$@"
