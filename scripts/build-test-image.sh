#!/usr/bin/env bash
# Build the Molecule target image localhost/nightly-logout-target:bookworm.
#
# There is no container registry here, so the image is a Debian bookworm rootfs made with
# debootstrap from the mirror this machine's apt uses, then `podman import`ed. What every target
# needs is installed while building (chroot shares the host's network and CA bundle):
#   python3 python3-apt acl sudo   Ansible itself, and `become_user` to an unprivileged user
#   python3-venv                   the site's virtualenv
#   cron logrotate procps          the real scheduler and rotation the role configures
#   postgresql redis-server        a real database and cache for multi-host scenarios
# Mail packages are left out on purpose: the role installs them when the mail hook is enabled,
# and the mail scenario proves that install.
#
# Cached: the image is labelled with a hash of this script and the mirror; when an image with
# that label exists the build is skipped. Set NIGHTLY_LOGOUT_REBUILD_IMAGE=1 to force a rebuild.
# Needs root (debootstrap, chroot), debootstrap and podman.
set -euo pipefail

readonly IMAGE="localhost/nightly-logout-target:bookworm"
readonly SUITE="bookworm"
readonly PACKAGES=(
  python3 python3-apt python3-venv acl sudo ca-certificates
  cron logrotate procps
  postgresql redis-server
)
readonly LABEL="nightly-logout.inputs"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly WORK_DIR="${REPO_DIR}/build/target-image"

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

inputs_hash() {
  local mirror="$1"
  { cat "${BASH_SOURCE[0]}"; printf '%s\n' "${mirror}"; } | sha256sum | cut -c1-16
}

current_label() {
  podman image inspect --format "{{ index .Labels \"${LABEL}\" }}" "${IMAGE}" 2>/dev/null || true
}

cleanup_mounts() {
  local rootfs="$1"
  if mountpoint -q "${rootfs}/proc"; then
    umount "${rootfs}/proc"
  fi
}

build_rootfs() {
  local mirror="$1" rootfs="$2"
  rm -rf "${rootfs}"
  mkdir -p "${rootfs}"

  log "debootstrap --variant=minbase ${SUITE} from ${mirror}"
  debootstrap --variant=minbase "${SUITE}" "${rootfs}" "${mirror}" >"${WORK_DIR}/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see ${WORK_DIR}/debootstrap.log"

  # Services must not start inside the chroot while packages install.
  printf '#!/bin/sh\nexit 101\n' >"${rootfs}/usr/sbin/policy-rc.d"
  chmod 0755 "${rootfs}/usr/sbin/policy-rc.d"
  mount -t proc proc "${rootfs}/proc"
  trap 'cleanup_mounts "${rootfs}"' EXIT

  log "installing: ${PACKAGES[*]}"
  chroot "${rootfs}" apt-get update -q >"${WORK_DIR}/apt.log" 2>&1 \
    || die "apt-get update in the rootfs failed, see ${WORK_DIR}/apt.log"
  chroot "${rootfs}" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"${WORK_DIR}/apt.log" 2>&1 \
    || die "apt-get install in the rootfs failed, see ${WORK_DIR}/apt.log"

  cleanup_mounts "${rootfs}"
  trap - EXIT
  rm -f "${rootfs}/usr/sbin/policy-rc.d"
  # Package lists stay (apt in the container works offline for what is cached); downloaded
  # .debs go.
  chroot "${rootfs}" apt-get clean
}

main() {
  local start=${SECONDS} mirror hash rootfs
  command -v podman >/dev/null || die "podman is not installed"
  command -v debootstrap >/dev/null || die "debootstrap is not installed"

  mirror="$(debian_mirror)"
  hash="$(inputs_hash "${mirror}")"
  if [[ "${NIGHTLY_LOGOUT_REBUILD_IMAGE:-0}" != 1 && "$(current_label)" == "${hash}" ]]; then
    log "${IMAGE} is up to date (inputs ${hash}); skipping the build"
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die "building the image needs root (debootstrap, chroot)"

  log "building ${IMAGE} (inputs ${hash})"
  mkdir -p "${WORK_DIR}"
  rootfs="${WORK_DIR}/rootfs"
  build_rootfs "${mirror}" "${rootfs}"

  log "podman import"
  tar -C "${rootfs}" -c . | podman import \
    --change "LABEL ${LABEL}=${hash}" \
    --change "CMD [\"cron\", \"-f\"]" \
    --quiet - "${IMAGE}" >/dev/null
  rm -rf "${rootfs}"
  log "built ${IMAGE} in $((SECONDS - start))s"
}

main "$@"
