#!/usr/bin/env bash
# Run every test of the project: linters, the Python test suite (Django on
# SQLite and on PostgreSQL+Redis, the role's and the browser test), and every
# Molecule scenario. Installs what they need first. CI runs exactly this.
#
#   ./test.sh             everything
#   ./test.sh STEP...     only these steps: yamllint ansible-lint shellcheck pytest molecule
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly REPO_DIR
readonly VENV_DIR="${REPO_DIR}/.venv"
readonly ALL_CHECKS=(yamllint ansible-lint shellcheck pytest molecule)

# shellcheck source=scripts/steps.sh
source "${REPO_DIR}/scripts/steps.sh"

install_test_packages() {
  local packages
  mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' scripts/apt-packages.txt)
  install_missing_apt_packages "${packages[@]}"
}

# Every file of the project, tracked or new, that git does not ignore.
project_files() {
  git ls-files --cached --others --exclude-standard
}

check_yamllint() {
  "${VENV_DIR}/bin/yamllint" --strict .
}

check_ansible_lint() {
  # Molecule playbooks name the role as Molecule would find it.
  ANSIBLE_ROLES_PATH="${REPO_DIR}/ansible/roles" \
    "${VENV_DIR}/bin/ansible-lint" --offline --profile production
}

check_shellcheck() {
  local file scripts=()
  while IFS= read -r file; do
    [[ -f ${file} ]] || continue
    if [[ ${file} == *.sh ]] || head -n 1 "${file}" | grep -qE '^#!.*\b(ba)?sh\b'; then
      scripts+=("${file}")
    fi
  done < <(project_files | grep -v '\.j2$')
  echo "shellcheck on ${#scripts[@]} scripts: ${scripts[*]}"
  shellcheck --external-sources "${scripts[@]}"
}

check_pytest() {
  local status=0
  "${VENV_DIR}/bin/python" -m pytest || status=$?
  # Exit status 5 (no test collected) fails this step like any other.
  if ((status == 5)); then
    echo "pytest collected no test: a suite that runs nothing is a failure" >&2
  fi
  return "${status}"
}

check_molecule() {
  export CONTAINERS_CONF="${REPO_DIR}/.config/containers/containers.conf"
  scripts/build-test-image.sh
  "${VENV_DIR}/bin/molecule" test --all
}

main() {
  local check checks=("$@")
  ((${#checks[@]})) || checks=("${ALL_CHECKS[@]}")
  for check in "${checks[@]}"; do
    if [[ " ${ALL_CHECKS[*]} " != *" ${check} "* ]]; then
      echo "Unknown step '${check}'. Steps: ${ALL_CHECKS[*]}" >&2
      exit 2
    fi
  done

  cd "${REPO_DIR}"
  # Molecule and ansible-lint find the venv's tools on PATH.
  export PATH="${VENV_DIR}/bin:${PATH}"
  require_step "Install Debian packages" install_test_packages
  require_step "Install Python requirements" install_python_requirements "${VENV_DIR}" requirements-dev.txt

  local failed=()
  for check in "${checks[@]}"; do
    run_step "${check}" "check_${check//-/_}"
    ((LAST_STEP_STATUS == 0)) || failed+=("${check}")
  done

  print_summary
  if ((${#failed[@]})); then
    printf 'FAILED steps: %s\n' "${failed[*]}" >&2
    exit 1
  fi
}

main "$@"
