#!/usr/bin/env bash
# Run the Django test suite (students/tests: SQLite, PostgreSQL and Redis) inside a Debian target
# image, on that release's own Python, PostgreSQL and Redis:
#
#   scripts/django-in-container.sh trixie      # localhost/nightly-logout-target:trixie
#
# The container gets a copy of this work tree (read-only mount, copied inside: the tests write
# caches and temp files), this machine's CA bundle and pip's registry settings so pip reaches PyPI,
# and a pip cache under build/ that outlives it. It installs requirements.txt plus the test
# runner pins of requirements-dev.txt (pytest, pytest-django) into a fresh venv and runs the suite
# as root (tests/servers.py runs PostgreSQL as the postgres user). The browser test is not run here.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR

main() {
  local name="${1:?usage: $0 IMAGE_NAME (e.g. trixie)}"
  local image="localhost/nightly-logout-target:${name}"
  local cache="${REPO_DIR}/build/pip-cache/${name}"
  mkdir -p "${cache}"
  # A container left by an interrupted run would block the name.
  podman rm --force --ignore "nightly-logout-django-${name}" >/dev/null
  podman run --rm --init --network=host \
    --name "nightly-logout-django-${name}" \
    --volume=/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    --volume="${REPO_DIR}:/src:ro" \
    --volume="${cache}:/root/.cache/pip" \
    --env=PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --env=PIP_DISABLE_PIP_VERSION_CHECK=1 \
    --env=PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-180}" \
    "${image}" bash -euo pipefail -c '
      mkdir /work && cd /work
      tar -C /src --exclude=./.venv --exclude=./build --exclude=./.git --exclude=./test-artifacts \
        --exclude=__pycache__ -c . | tar -x
      python3 --version; ls -d /usr/lib/postgresql/*/bin; redis-server --version
      python3 -m venv /venv
      grep -E "^(pytest|pytest-django)==" requirements-dev.txt >/tmp/test-runner.txt
      /venv/bin/pip install --quiet -r requirements.txt -r /tmp/test-runner.txt
      /venv/bin/python -m pytest -p no:cacheprovider students/tests
    '
}

main "$@"
