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
# from the mirror this machine's apt uses (it serves every suite), then `podman import`ed. What a
# cron target needs is installed while building (chroot shares the host's network and CA bundle):
#   python3 python3-apt acl sudo   Ansible itself, and `become_user` to an unprivileged user
#   python3-venv                   the site's virtualenv
#   cron logrotate procps          the real scheduler and rotation the role configures
#   postgresql redis-server        a real database and cache (multi-host scenarios, the Django suite)
# Mail packages are left out on purpose: the role installs them when the mail hook is enabled,
# and the mail scenario proves that install.
#
# Cached per image: each is labelled with a hash of what it is built from (suite, packages, main
# process, mirror, the build functions below); when an image with that label exists its build is
# skipped. Set NIGHTLY_LOGOUT_REBUILD_IMAGE=1 to force a rebuild.
# Needs root (debootstrap, chroot), debootstrap and podman.
set -euo pipefail

readonly IMAGE_REPO="localhost/nightly-logout-target"
# What the scenarios use (molecule/*/molecule.yml): the default when no name is given.
readonly ALL_TARGETS=(bookworm trixie bookworm-bare trixie-bare bookworm-systemd trixie-systemd)
readonly SUITES=(bookworm trixie)
readonly CRON_TARGET_PACKAGES=(
  python3 python3-apt python3-venv acl sudo ca-certificates
  cron logrotate procps
  postgresql redis-server
)
readonly LABEL="nightly-logout.inputs"
readonly PARALLEL_BUILDS=2
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

cleanup_mounts() {
  local rootfs="$1"
  if mountpoint -q "${rootfs}/proc"; then
    umount "${rootfs}/proc"
  fi
}

# build_rootfs SUITE MIRROR ROOTFS LOG_DIR [PACKAGE...]
build_rootfs() {
  local suite="$1" mirror="$2" rootfs="$3" log_dir="$4"
  shift 4
  rm -rf "${rootfs}"
  mkdir -p "${rootfs}"

  log "debootstrap --variant=minbase ${suite} from ${mirror}"
  debootstrap --variant=minbase "${suite}" "${rootfs}" "${mirror}" >"${log_dir}/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see ${log_dir}/debootstrap.log"
  (($#)) || return 0

  # Services must not start inside the chroot while packages install.
  printf '#!/bin/sh\nexit 101\n' >"${rootfs}/usr/sbin/policy-rc.d"
  chmod 0755 "${rootfs}/usr/sbin/policy-rc.d"
  mount -t proc proc "${rootfs}/proc"
  trap 'cleanup_mounts "${rootfs}"' EXIT

  log "installing: $*"
  chroot "${rootfs}" apt-get update -q >"${log_dir}/apt.log" 2>&1 \
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

# build_image NAME MIRROR: build localhost/nightly-logout-target:NAME unless it is up to date.
build_image() {
  local name="$1" mirror="$2" start=${SECONDS}
  local image="${IMAGE_REPO}:${name}" suite="${name%%-*}" packages=() command hash work_dir previous
  if [[ " ${SUITES[*]} " != *" ${suite} "* ]]; then
    die "unknown image '${name}': names are <suite>, <suite>-bare or <suite>-systemd, suites: ${SUITES[*]}"
  fi
  case "${name}" in
    "${suite}")
      packages=("${CRON_TARGET_PACKAGES[@]}")
      command='["cron", "-f"]'
      ;;
    "${suite}-bare") command='["sleep", "infinity"]' ;;
    # molecule/systemd: a cron target that boots systemd as its PID 1 (Podman's systemd mode).
    "${suite}-systemd")
      packages=("${CRON_TARGET_PACKAGES[@]}" systemd systemd-sysv dbus)
      command='["/lib/systemd/systemd"]'
      ;;
    *) die "unknown image '${name}': names are <suite>, <suite>-bare or <suite>-systemd" ;;
  esac
  hash="$({
    printf '%s\n' "${suite}" "${mirror}" "${command}" "${packages[@]}"
    declare -f build_rootfs
  } | sha256sum | cut -c1-16)"
  if [[ "${NIGHTLY_LOGOUT_REBUILD_IMAGE:-0}" != 1 && "$(current_label "${image}")" == "${hash}" ]]; then
    log "${image} is up to date (inputs ${hash}); skipping the build"
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die "building the image needs root (debootstrap, chroot)"

  log "building ${image} (inputs ${hash})"
  work_dir="${WORK_ROOT}/${name}"
  mkdir -p "${work_dir}"
  build_rootfs "${suite}" "${mirror}" "${work_dir}/rootfs" "${work_dir}" "${packages[@]}"

  previous="$(podman image inspect --format '{{.Id}}' "${image}" 2>/dev/null || true)"
  log "podman import"
  tar -C "${work_dir}/rootfs" -c . | podman import \
    --change "LABEL ${LABEL}=${hash}" \
    --change "CMD ${command}" \
    --quiet - "${image}" >/dev/null
  rm -rf "${work_dir}/rootfs"
  # The image this one replaces, now untagged, unless a container still uses it.
  if [[ -n ${previous} ]]; then
    podman image rm "${previous}" >/dev/null 2>&1 || true
  fi
  log "built ${image} in $((SECONDS - start))s"
}

main() {
  local targets=("$@") name mirror
  ((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")
  command -v podman >/dev/null || die "podman is not installed"
  command -v debootstrap >/dev/null || die "debootstrap is not installed"
  mirror="$(debian_mirror)"
  # Two builds at a time: debootstrap waits on the mirror as much as on the CPU, and a fresh machine
  # builds six images. Each build logs to build/target-image/<name>/.
  local running=() failed=0 pid
  for name in "${targets[@]}"; do
    build_image "${name}" "${mirror}" &
    running+=($!)
    if ((${#running[@]} >= PARALLEL_BUILDS)); then
      wait "${running[0]}" || failed=1
      running=("${running[@]:1}")
    fi
  done
  for pid in "${running[@]}"; do
    wait "${pid}" || failed=1
  done
  ((failed == 0)) || die "an image failed to build (see the ERROR above)"
}

main "$@"
