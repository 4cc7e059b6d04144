#!/usr/bin/env bash
# Build the Molecule target images, by name: localhost/nightly-logout-target:<name>.
#
#   scripts/build-test-image.sh                     every image the scenarios need
#   scripts/build-test-image.sh bookworm trixie-bare  only these
#
# Names: <suite> (bookworm, trixie) is a cron target: the Debian release plus what every role
# scenario needs, its main process the real cron daemon. <suite>-bare is the debootstrap minimal
# base and nothing the project installs (a newcomer's fresh server), its main process
# `sleep infinity` (molecule/bare drives it with podman exec). <suite>-systemd is a cron target
# plus systemd, its main process systemd (molecule/systemd).
#
# There is no container registry here, so each image is a Debian rootfs made with debootstrap
# from the mirror this machine's apt uses (it serves every suite), then `podman import`ed. The
# three images of a suite are one chain on one rootfs, so each suite is debootstrapped once:
# the minimal base is imported as <suite>-bare, what a cron target needs is installed into it
# (chroot shares the host's network and CA bundle) and imported as <suite>, then systemd is added
# and imported as <suite>-systemd. A cron target has:
#   python3 python3-apt acl sudo   Ansible itself, and `become_user` to an unprivileged user
#   python3-venv                   the site's virtualenv
#   cron logrotate procps          the real scheduler and rotation the role configures
#   postgresql redis-server        a real database and cache (multi-host scenarios, the Django suite)
# Mail packages are left out on purpose: the role installs them when the mail hook is enabled,
# and the mail scenario proves that install.
#
# Cached per image: each is labelled with a hash of what it is built from (suite, mirror, the
# packages of its chain up to it, main process, the build functions below); a suite whose asked-for
# images all carry their current label is not built again. Set NIGHTLY_LOGOUT_REBUILD_IMAGE=1 to
# force a rebuild. Needs root (debootstrap, chroot), debootstrap and podman.
set -euo pipefail

readonly IMAGE_REPO="localhost/nightly-logout-target"
# What the scenarios use (molecule/*/molecule.yml): the default when no name is given.
readonly ALL_TARGETS=(bookworm trixie bookworm-bare trixie-bare bookworm-systemd trixie-systemd)
readonly SUITES=(bookworm trixie)
# The chain of one suite, in build order: each kind adds its packages to the one before.
readonly KINDS=(bare cron systemd)
readonly CRON_TARGET_PACKAGES=(
  python3 python3-apt python3-venv acl sudo ca-certificates
  cron logrotate procps
  postgresql redis-server
)
readonly SYSTEMD_TARGET_PACKAGES=(systemd systemd-sysv dbus)
readonly LABEL="nightly-logout.inputs"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly WORK_ROOT="${REPO_DIR}/build/target-image"

log() {
  printf '%s: %s\n' "$(date --iso-8601=seconds)" "$*" >&2
}

die() {
  log "ERROR: $*"
  exit 1
}

# The Debian mirror apt uses on this machine (deb822 or one-line format), so CI builds from the
# same place its own apt-get does.
debian_mirror() {
  local uri
  uri="$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  if [[ -z "${uri}" ]]; then
    uri="$(awk '/^deb / && $2 !~ /security/ { print $2; exit }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
  fi
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

current_label() {
  podman image inspect --format "{{ index .Labels \"${LABEL}\" }}" "$1" 2>/dev/null || true
}

# image_name SUITE KIND: bookworm-bare, bookworm, bookworm-systemd.
image_name() {
  case "$2" in
    cron) printf '%s\n' "$1" ;;
    *) printf '%s-%s\n' "$1" "$2" ;;
  esac
}

# main_process KIND: the image's CMD.
main_process() {
  case "$1" in
    bare) printf '%s\n' '["sleep", "infinity"]' ;;
    cron) printf '%s\n' '["cron", "-f"]' ;;
    # molecule/systemd: a cron target that boots systemd as its PID 1 (Podman's systemd mode).
    systemd) printf '%s\n' '["/lib/systemd/systemd"]' ;;
  esac
}

# chain_packages KIND: what the chain has installed on top of debootstrap's base by that kind.
chain_packages() {
  case "$1" in
    cron) printf '%s\n' "${CRON_TARGET_PACKAGES[@]}" ;;
    systemd) printf '%s\n' "${CRON_TARGET_PACKAGES[@]}" "${SYSTEMD_TARGET_PACKAGES[@]}" ;;
  esac
}

# inputs_hash SUITE KIND MIRROR: the label of an up-to-date image.
inputs_hash() {
  {
    printf '%s\n' "$1" "$3"
    main_process "$2"
    chain_packages "$2"
    declare -f debootstrap_rootfs install_into_rootfs import_rootfs
  } | sha256sum | cut -c1-16
}

cleanup_mounts() {
  local rootfs="$1"
  if mountpoint -q "${rootfs}/proc"; then
    umount "${rootfs}/proc"
  fi
}

# debootstrap_rootfs SUITE MIRROR ROOTFS LOG_DIR
debootstrap_rootfs() {
  local suite="$1" mirror="$2" rootfs="$3" log_dir="$4"
  rm -rf "${rootfs}"
  mkdir -p "${rootfs}"
  log "debootstrap --variant=minbase ${suite} from ${mirror}"
  debootstrap --variant=minbase "${suite}" "${rootfs}" "${mirror}" >"${log_dir}/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see ${log_dir}/debootstrap.log"
}

# install_into_rootfs ROOTFS LOG_DIR PACKAGE...
install_into_rootfs() {
  local rootfs="$1" log_dir="$2"
  shift 2
  # Services must not start inside the chroot while packages install.
  printf '#!/bin/sh\nexit 101\n' >"${rootfs}/usr/sbin/policy-rc.d"
  chmod 0755 "${rootfs}/usr/sbin/policy-rc.d"
  mount -t proc proc "${rootfs}/proc"
  trap 'cleanup_mounts "${rootfs}"' EXIT

  log "installing: $*"
  chroot "${rootfs}" apt-get update -q >>"${log_dir}/apt.log" 2>&1 \
    || die "apt-get update in the rootfs failed, see ${log_dir}/apt.log"
  chroot "${rootfs}" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "$@" >>"${log_dir}/apt.log" 2>&1 \
    || die "apt-get install in the rootfs failed, see ${log_dir}/apt.log"

  cleanup_mounts "${rootfs}"
  trap - EXIT
  rm -f "${rootfs}/usr/sbin/policy-rc.d"
  # Package lists stay (apt in the container works offline for what is cached); downloaded
  # .debs go.
  chroot "${rootfs}" apt-get clean
}

# import_rootfs ROOTFS IMAGE HASH COMMAND: the rootfs as it is now becomes IMAGE.
import_rootfs() {
  local rootfs="$1" image="$2" hash="$3" command="$4" previous
  previous="$(podman image inspect --format '{{.Id}}' "${image}" 2>/dev/null || true)"
  log "podman import ${image}"
  tar -C "${rootfs}" -c . | podman import \
    --change "LABEL ${LABEL}=${hash}" \
    --change "CMD ${command}" \
    --quiet - "${image}" >/dev/null
  # The image this one replaces, now untagged, unless a container still uses it.
  if [[ -n ${previous} ]]; then
    podman image rm "${previous}" >/dev/null 2>&1 || true
  fi
}

# build_suite SUITE MIRROR KIND...: the chain of SUITE, importing each asked-for KIND that is out of
# date, and going no further along the chain than the last asked-for kind.
build_suite() {
  local suite="$1" mirror="$2" start=${SECONDS}
  shift 2
  local wanted=" $* " kind stale=() last="" hash work_dir rootfs
  for kind in "${KINDS[@]}"; do
    [[ ${wanted} == *" ${kind} "* ]] || continue
    last=${kind}
    hash="$(inputs_hash "${suite}" "${kind}" "${mirror}")"
    if [[ "${NIGHTLY_LOGOUT_REBUILD_IMAGE:-0}" == 1 \
      || "$(current_label "${IMAGE_REPO}:$(image_name "${suite}" "${kind}")")" != "${hash}" ]]; then
      stale+=("${kind}")
    else
      log "${IMAGE_REPO}:$(image_name "${suite}" "${kind}") is up to date (inputs ${hash})"
    fi
  done
  ((${#stale[@]})) || return 0
  [[ "$(id -u)" == 0 ]] || die "building the images needs root (debootstrap, chroot)"

  work_dir="${WORK_ROOT}/${suite}"
  rootfs="${work_dir}/rootfs"
  mkdir -p "${work_dir}"
  : >"${work_dir}/apt.log"
  debootstrap_rootfs "${suite}" "${mirror}" "${rootfs}" "${work_dir}"
  for kind in "${KINDS[@]}"; do
    case "${kind}" in
      cron) install_into_rootfs "${rootfs}" "${work_dir}" "${CRON_TARGET_PACKAGES[@]}" ;;
      systemd) install_into_rootfs "${rootfs}" "${work_dir}" "${SYSTEMD_TARGET_PACKAGES[@]}" ;;
    esac
    if [[ " ${stale[*]} " == *" ${kind} "* ]]; then
      import_rootfs "${rootfs}" "${IMAGE_REPO}:$(image_name "${suite}" "${kind}")" \
        "$(inputs_hash "${suite}" "${kind}" "${mirror}")" "$(main_process "${kind}")"
    fi
    [[ ${kind} != "${last}" ]] || break
  done
  rm -rf "${rootfs}"
  log "built ${stale[*]} of ${suite} in $((SECONDS - start))s"
}

main() {
  local targets=("$@") name suite kind mirror
  ((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")
  command -v podman >/dev/null || die "podman is not installed"
  command -v debootstrap >/dev/null || die "debootstrap is not installed"
  mirror="$(debian_mirror)"
  # The kinds asked for, per suite.
  declare -A kinds=()
  for name in "${targets[@]}"; do
    suite=${name%%-*}
    kind=${name#"${suite}"}
    kind=${kind#-}
    kind=${kind:-cron}
    if [[ " ${SUITES[*]} " != *" ${suite} "* || " ${KINDS[*]} " != *" ${kind} "* || ${kind} == cron && ${name} != "${suite}" ]]; then
      die "unknown image '${name}': names are <suite>, <suite>-bare or <suite>-systemd, suites: ${SUITES[*]}"
    fi
    kinds[${suite}]+="${kind} "
  done
  # The suites at once: debootstrap waits on the mirror as much as on the CPU. Each logs to
  # build/target-image/<suite>/.
  local pids=() failed=0 pid
  for suite in "${!kinds[@]}"; do
    # shellcheck disable=SC2086 # the kinds are words
    build_suite "${suite}" "${mirror}" ${kinds[${suite}]} &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "${pid}" || failed=1
  done
  ((failed == 0)) || die "an image failed to build (see the ERROR above)"
}

main "$@"
