#!/usr/bin/env bash
# The second stack of the version matrix, inside a Debian target image, on that release's own Python,
# PostgreSQL and Redis:
#
#   scripts/django-in-container.sh trixie      # localhost/nightly-logout-target:trixie
#
# 1. The Django suite (students/tests: SQLite, PostgreSQL and Redis) on requirements-latest.txt (the newest
#    Django and ansible-core: 6.1 and 2.21 need Python 3.12+, so Debian 13's 3.13), plus the test runner
#    pins of requirements-dev.txt. The browser test is not run here.
# 2. The role installed as users install roles, and applied by ansible-core 2.21 as the controller: a
#    separate playbook folder with a requirements.yml naming this repository (`src: git+file://...`; a
#    clone of its HEAD, made here, no network), `ansible-galaxy role install -r requirements.yml -p roles`,
#    then its playbook applied as root to localhost, for a site elsewhere on disk (/srv/lcstats, owned by a
#    throwaway user). The job is run as the "Run it now" line runs it: the sessions must be gone from the
#    database and the log must end with the success line; a second apply must change nothing.
#
# The container gets a copy of this work tree (read-only mount, copied inside: the tests write caches and
# temp files), the clone, this machine's CA bundle and pip's registry settings so pip reaches PyPI, and a
# pip cache under build/ that outlives it. Everything runs as root there (tests/support/servers.py runs
# PostgreSQL as the postgres user; the role needs root).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR

# Run inside the container (bash -euo pipefail). /src: this work tree; /role-repo.git: a clone of HEAD.
# shellcheck disable=SC2016 # expanded by the container's bash
readonly IN_CONTAINER='
  step() { printf "\n==> %s (%ss)\n" "$*" "${SECONDS}"; }
  copy_tree() {
    mkdir -p "$1"
    tar -C /src --exclude=./.venv --exclude=./build --exclude=./.git --exclude=./test-artifacts \
      --exclude=__pycache__ --exclude=./db.sqlite3 -c . | tar -C "$1" -x
  }

  step "The second stack: requirements-latest.txt"
  copy_tree /work && cd /work
  python3 --version; ls -d /usr/lib/postgresql/*/bin; redis-server --version
  python3 -m venv /venv
  grep -E "^(pytest|pytest-django)==" requirements-dev.txt >/tmp/test-runner.txt
  /venv/bin/pip install --quiet -r requirements-latest.txt -r /tmp/test-runner.txt
  /venv/bin/python -c "import django, ansible; print(\"Django\", django.get_version(), \"ansible-core\", ansible.__version__)"

  step "The Django suite on this stack"
  /venv/bin/python -m pytest -p no:cacheprovider students/tests

  step "A site elsewhere on disk, its user, two logged-in users"
  useradd --create-home --shell /bin/bash sitekeeper
  copy_tree /srv/lcstats
  chown -R sitekeeper: /srv/lcstats
  site() { runuser -u sitekeeper -- env --chdir=/srv/lcstats /venv/bin/python manage.py "$@"; }
  site migrate --noinput --verbosity 0
  site shell --verbosity 0 --command "
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
for name in (\"alice\", \"bob\"):
    user = get_user_model().objects.create_user(name, password=\"not-used-here\")
    session = SessionStore()
    session.update({\"_auth_user_id\": str(user.pk), \"_auth_user_hash\": user.get_session_auth_hash(),
                    \"_auth_user_backend\": \"django.contrib.auth.backends.ModelBackend\"})
    session.create()
"
  count_sessions() {
    site shell --verbosity 0 --command \
      "from django.contrib.sessions.models import Session; print(Session.objects.count())"
  }
  [[ "$(count_sessions)" == 2 ]]

  step "A playbook repository: the role from git, by ansible-galaxy (which runs git)"
  apt-get install -y -q --no-install-recommends git >/tmp/apt-git.log 2>&1 \
    || { apt-get update -q >>/tmp/apt-git.log 2>&1 && apt-get install -y -q --no-install-recommends git >>/tmp/apt-git.log 2>&1; } \
    || { cat /tmp/apt-git.log; exit 1; }
  mkdir -p /srv/playbooks && cd /srv/playbooks
  cat >requirements.yml <<EOF
---
roles:
  - name: nightly_logout
    src: git+file:///role-repo.git
EOF
  cat >site.yml <<EOF
---
- name: Log every user of the site out every night
  hosts: localhost
  connection: local
  vars:
    ansible_python_interpreter: /usr/bin/python3
  roles:
    - role: nightly_logout
      vars:
        nightly_logout_user: sitekeeper
        nightly_logout_project_dir: /srv/lcstats
        nightly_logout_venv_dir: /venv
EOF
  /venv/bin/ansible-galaxy role install -r requirements.yml -p roles
  test -f roles/nightly_logout/meta/main.yml
  /venv/bin/ansible-galaxy role list -p roles

  step "Apply it with ansible-core $(/venv/bin/ansible --version | head -n 1)"
  export ANSIBLE_ROLES_PATH=/srv/playbooks/roles ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default
  /venv/bin/ansible-playbook -i localhost, site.yml
  crontab -l -u sitekeeper

  step "Run the job now, as the \"Run it now\" line does"
  line=$(crontab -l -u sitekeeper | grep -A1 -x -F "#Ansible: nightly_logout" | tail -n 1)
  command=$(sed -E "s/^([^ ]+ +){5}//" <<<"${line}")
  command=${command/ --scheduled / }
  runuser -u sitekeeper -- sh -c "${command}"
  log=$(grep -oE ">> *[^ ]+" <<<"${command}" | sed -E "s/^>> *//")
  cat "${log}"
  [[ "$(count_sessions)" == 0 ]] || { echo "sessions left after the run" >&2; exit 1; }
  tail -n 1 "${log}" | grep -qE "^[0-9T:+-]+: Daily logout completed successfully$" \
    || { echo "the log does not end with the success line" >&2; exit 1; }

  step "Apply it again: nothing changes"
  /venv/bin/ansible-playbook -i localhost, site.yml | tee /tmp/second.log
  grep -qE "localhost +: ok=[0-9]+ +changed=0 " /tmp/second.log \
    || { echo "the second apply changed something" >&2; exit 1; }
  step "Done"
'

main() {
  local name="${1:?usage: $0 IMAGE_NAME (e.g. trixie)}"
  local image="localhost/nightly-logout-target:${name}"
  local cache="${REPO_DIR}/build/pip-cache/${name}" clone="${REPO_DIR}/build/role-repo-${name}.git"
  mkdir -p "${cache}"
  # What ansible-galaxy installs: this repository's HEAD (a work tree's uncommitted changes are not in it).
  rm -rf "${clone}"
  git clone --quiet --bare --no-hardlinks "${REPO_DIR}" "${clone}"
  if ! git -C "${REPO_DIR}" diff --quiet HEAD -- ansible/roles; then
    echo "Note: ansible/roles has uncommitted changes; the role ansible-galaxy installs is HEAD's" >&2
  fi
  # A container left by an interrupted run would block the name.
  podman rm --force --ignore "nightly-logout-django-${name}" >/dev/null
  podman run --rm --init --network=host \
    --name "nightly-logout-django-${name}" \
    --volume=/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    --volume="${REPO_DIR}:/src:ro" \
    --volume="${clone}:/role-repo.git:ro" \
    --volume="${cache}:/root/.cache/pip" \
    --env=PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --env=PIP_DISABLE_PIP_VERSION_CHECK=1 \
    --env=PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-180}" \
    "${image}" bash -euo pipefail -c "${IN_CONTAINER}"
}

main "$@"
