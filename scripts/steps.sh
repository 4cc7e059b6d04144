# shellcheck shell=bash
# What ./setup.sh and ./test.sh share: named, timed steps and the machine's
# prerequisites (Debian packages, the virtualenv). Sourced, never run.

# Names and results of the steps run so far, for the closing summary.
STEP_NAMES=()
STEP_RESULTS=()
STEP_SECONDS=()

# Run "$@" as the step called $1 (the rest is the command). Prints the name on
# the way in and the outcome with its duration on the way out. The body runs
# in a subshell with errexit on, so a failing line inside a step function
# stops that step. Always returns 0 and leaves the step's exit status in
# LAST_STEP_STATUS: called as a condition (`if run_step`, `run_step ||`),
# bash would silently ignore `set -e` inside the step.
LAST_STEP_STATUS=0
run_step() {
  local name=$1
  shift
  local started=${SECONDS} status=0
  printf '\n==> %s\n' "${name}"
  set +e
  (
    set -e
    "$@"
  )
  status=$?
  set -e
  record_step "${name}" "${status}" "$((SECONDS - started))"
}

# record_step NAME STATUS SECONDS: prints the outcome and adds it to the summary.
record_step() {
  local name=$1 status=$2 took=$3
  STEP_NAMES+=("${name}")
  STEP_SECONDS+=("${took}")
  if ((status == 0)); then
    STEP_RESULTS+=("ok")
    printf '<== %s: ok (%ss)\n' "${name}" "${took}"
  else
    STEP_RESULTS+=("FAILED (exit ${status})")
    printf '<== %s: FAILED with exit code %s (%ss)\n' "${name}" "${status}" "${took}" >&2
  fi
  LAST_STEP_STATUS=${status}
}

# Run a step and stop the whole script if it fails, naming the step.
require_step() {
  local name=$1
  run_step "$@"
  if ((LAST_STEP_STATUS != 0)); then
    print_summary
    printf '\nStopped: step "%s" failed (see its output above).\n' "${name}" >&2
    exit 1
  fi
}

# One line per step run so far, then "N passed, N failed".
print_summary() {
  local i passed=0 failed=0
  printf '\nSummary:\n'
  for i in "${!STEP_NAMES[@]}"; do
    printf '  %-28s %-20s %6ss\n' "${STEP_NAMES[i]}" "${STEP_RESULTS[i]}" "${STEP_SECONDS[i]}"
    if [[ ${STEP_RESULTS[i]} == ok ]]; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
    fi
  done
  printf 'steps: %d passed, %d failed\n' "${passed}" "${failed}"
}

# Install the named Debian packages that are not installed yet; refresh the
# package lists first, and only when something is missing.
install_missing_apt_packages() {
  local package missing=()
  for package in "$@"; do
    if [[ $(dpkg-query -W -f='${Status}' "${package}" 2>/dev/null) != "install ok installed" ]]; then
      missing+=("${package}")
    fi
  done
  if ((${#missing[@]} == 0)); then
    echo "All ${#} Debian packages already installed."
    return 0
  fi
  echo "Installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

# Create the project's virtualenv (once) and install a requirements file in it.
# Built on Debian's own Python: the site user runs the venv's python from cron,
# and an interpreter under another user's home (pyenv in /root) is out of its reach.
readonly SYSTEM_PYTHON=/usr/bin/python3
install_python_requirements() {
  local venv_dir=$1 requirements=$2
  if [[ ! -x ${venv_dir}/bin/python ]]; then
    "${SYSTEM_PYTHON}" -m venv "${venv_dir}"
  fi
  local interpreter
  interpreter=$(readlink -f "${venv_dir}/bin/python")
  if ! runuser -u nobody -- test -x "${interpreter}"; then
    echo "WARNING: other users cannot run ${interpreter}, the python of ${venv_dir}: a site user" \
      "other than root and the browser test need it. Rebuild it: rm -rf ${venv_dir} and run this again." >&2
  fi
  "${venv_dir}/bin/python" -m pip install --quiet --disable-pip-version-check -r "${requirements}"
}
