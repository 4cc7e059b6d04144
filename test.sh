#!/usr/bin/env bash
# Run every test of the project: linters, the Python test suite (Django on
# SQLite and on PostgreSQL+Redis, the role's and the browser test), and every
# Molecule scenario. Installs what they need first. CI runs exactly this.
#
#   ./test.sh             everything
#   ./test.sh STEP...     only these steps: yamllint ansible-lint shellcheck pytest molecule
#
# The target images (scripts/build-test-image.sh) build in the background from the start; the
# molecule step waits for them, then runs every scenario of molecule/ and, inside Debian 13, the second
# stack of the version matrix (Django 6.1 and ansible-core 2.21: scripts/django-in-container.sh) in
# MOLECULE_LANES parallel lanes.
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
  # Two workers (the machine's two cores): most tests wait on servers, browsers and subprocesses, not
  # the CPU. --dist loadfile keeps a file's tests on one worker: an e2e file's screenshot folder is
  # emptied by its first test, and OS users and server ports are random, so workers never collide.
  "${VENV_DIR}/bin/python" -m pytest -n 2 --dist loadfile || status=$?
  # Exit status 5 (no test collected) fails this step like any other.
  if ((status == 5)); then
    echo "pytest collected no test: a suite that runs nothing is a failure" >&2
  fi
  return "${status}"
}

# Seconds each job of the molecule step takes, so the longest start first and the two lanes end
# close together; a job not listed runs last. Measured two at a time in a fresh clone on a fresh 2-core
# machine of CI's kind (2026-12-07), with the pipelined podman connection.
declare -rA EXPECTED_SECONDS=(
  [systemd]=970 [cluster]=570 [invalid]=340 [monitoring]=295 [default]=290 [mail]=290 [django-trixie]=270
  [cron_cases]=240 [bare]=90
)
# Two lanes on two cores: a third was tried (2026-12-07) and the CPU stayed saturated (vmstat: 0% idle),
# so it only stretched every job (cluster 546 s -> 1302 s).
readonly MOLECULE_LANES=2
readonly MOLECULE_LOG_DIR="${REPO_DIR}/test-artifacts/molecule"

# Every folder of molecule/ that has a molecule.yml, then the Django suite on Debian 13
# (scripts/django-in-container.sh): longest expected first, unknown ones last (by name).
molecule_jobs() {
  local file name
  {
    for file in molecule/*/molecule.yml; do
      name=$(basename "$(dirname "${file}")")
      printf '%s %s\n' "${EXPECTED_SECONDS[${name}]:--1}" "${name}"
    done
    printf '%s %s\n' "${EXPECTED_SECONDS[django-trixie]}" django-trixie
  } | sort -k1,1nr -k2,2 | cut -d' ' -f2
}

# A job that hangs is stopped after this long (exit 124), so CI ends with every job's summary line.
readonly MOLECULE_JOB_TIMEOUT=30m

run_molecule_job() {
  local name=$1 started=${SECONDS} status=0 command
  if [[ ${name} == django-trixie ]]; then
    command=(scripts/django-in-container.sh trixie)
  else
    command=("${VENV_DIR}/bin/molecule" test -s "${name}")
  fi
  timeout --kill-after=1m "${MOLECULE_JOB_TIMEOUT}" "${command[@]}" >"${MOLECULE_LOG_DIR}/${name}.log" 2>&1 \
    || status=$?
  printf '%s %s\n' "${status}" "$((SECONDS - started))" >"${MOLECULE_LOG_DIR}/${name}.result"
  printf '  finished %-14s exit %s after %ss\n' "${name}" "${status}" "$((SECONDS - started))"
}

CONTAINERS_CONF="${REPO_DIR}/.config/containers/containers.conf"
readonly IMAGE_BUILD_LOG="${REPO_DIR}/test-artifacts/images.log"
readonly IMAGE_BUILD_STATUS="${REPO_DIR}/test-artifacts/images.status"

# The target images build in the background from the start (debootstrap waits on the mirror more
# than on the CPU), so on a fresh machine they are ready when the molecule step begins.
start_image_build() {
  mkdir -p "$(dirname "${IMAGE_BUILD_LOG}")"
  rm -f "${IMAGE_BUILD_STATUS}"
  (
    status=0
    CONTAINERS_CONF="${CONTAINERS_CONF}" scripts/build-test-image.sh >"${IMAGE_BUILD_LOG}" 2>&1 || status=$?
    echo "${status} ${SECONDS}" >"${IMAGE_BUILD_STATUS}"
  ) &
}

wait_for_images() {
  local status seconds
  while [[ ! -s ${IMAGE_BUILD_STATUS} ]]; do
    sleep 2
  done
  read -r status seconds <"${IMAGE_BUILD_STATUS}"
  cat "${IMAGE_BUILD_LOG}"
  echo "Target images ready (built in the background since the start, ${seconds}s into the run)."
  return "${status}"
}

# The images once, then every job in MOLECULE_LANES parallel lanes, each job's output in
# test-artifacts/molecule/<job>.log (printed here when it fails), one summary line per job.
check_molecule() {
  export CONTAINERS_CONF
  wait_for_images
  local names name result status seconds failed=0
  mapfile -t names < <(molecule_jobs)
  rm -rf "${MOLECULE_LOG_DIR}"
  mkdir -p "${MOLECULE_LOG_DIR}"
  echo "${#names[@]} jobs in ${MOLECULE_LANES} lanes, longest first: ${names[*]}"
  for name in "${names[@]}"; do
    while (($(jobs -pr | wc -l) >= MOLECULE_LANES)); do
      wait -n || true
    done
    printf '  started  %s\n' "${name}"
    run_molecule_job "${name}" &
  done
  wait
  printf '\nMolecule jobs (expected seconds in test.sh):\n'
  for name in "${names[@]}"; do
    result=$(cat "${MOLECULE_LOG_DIR}/${name}.result" 2>/dev/null || echo "? 0")
    read -r status seconds <<<"${result}"
    if [[ ${status} == 0 ]]; then
      printf '  %-14s %-16s %5ss (expected %ss)\n' "${name}" ok "${seconds}" "${EXPECTED_SECONDS[${name}]:-?}"
    else
      failed=$((failed + 1))
      [[ ${status} == 124 ]] && status="timed out" || status="exit ${status}"
      printf '  %-14s %-16s %5ss (expected %ss)\n' "${name}" "FAILED (${status})" "${seconds}" \
        "${EXPECTED_SECONDS[${name}]:-?}"
    fi
  done
  for name in "${names[@]}"; do
    if [[ $(cut -d' ' -f1 "${MOLECULE_LOG_DIR}/${name}.result" 2>/dev/null) != 0 ]]; then
      printf '\n===== %s failed: %s =====\n' "${name}" "${MOLECULE_LOG_DIR}/${name}.log"
      cat "${MOLECULE_LOG_DIR}/${name}.log"
    fi
  done
  ((failed == 0))
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
  if [[ " ${checks[*]} " == *" molecule "* ]]; then
    start_image_build
  fi

  # pytest runs alone, not beside molecule: tried this session, its browser tests' timing bounds
  # failed at the load of pytest plus two Molecule lanes on two cores (see README).
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
