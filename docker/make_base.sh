#!/usr/bin/env bash
# Make the base of the CPU engine-builder image (docker/Dockerfile.cpu) from Debian's packages alone:
# a Debian 12 (bookworm) root file system made with mmdebstrap (minbase variant plus the packages of
# docker/base-cpu.packages), written as a tarball that becomes an image with
#   docker import OUT.tar compsrt-debian-base:bookworm       (Docker)
#   docker/cpu_image_check.sh                                 (buildah; what `make docker-test` runs)
#
#   docker/make_base.sh OUT.tar
#
# Needs root (mmdebstrap's root mode) and mmdebstrap (apt-get install mmdebstrap; eatmydata, when
# installed, makes it faster). Documentation, man
# pages and translations are left out of the file system. Environment:
#   DEBIAN_MIRROR  default http://deb.debian.org/debian
#   DEB_CACHE      a folder of downloaded .deb files kept between runs (optional)
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
die() { echo "$PROG: error: $*" >&2; exit 2; }

[[ $# -eq 1 && $1 == *.tar ]] || die "usage: $PROG OUT.tar"
OUT=$1
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap)"
[[ $(id -u) -eq 0 ]] || die "run as root (mmdebstrap's root mode)"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=$(grep -v '^#' "$HERE/base-cpu.packages" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
[[ -n $packages ]] || die "no packages in $HERE/base-cpu.packages"

hooks=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)  # merged /usr without the usrmerge package (and its perl)
if command -v eatmydata >/dev/null; then  # dpkg without fsync: the file system is a tarball in the end
    hooks+=(--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata)
fi
if [[ -n ${DEB_CACHE:-} ]]; then
    mkdir -p "$DEB_CACHE"
    # shellcheck disable=SC2016  # "$1" is for mmdebstrap's hook shell (the root file system's path)
    hooks+=(--skip=essential/unlink --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
            --setup-hook="sync-in $DEB_CACHE /var/cache/apt/archives/"
            --customize-hook="sync-out /var/cache/apt/archives $DEB_CACHE")
fi
tmp="$OUT.tmp.$$"
trap 'rm -f "$tmp"' EXIT
mmdebstrap --variant=minbase --include="$packages" --format=tar "${hooks[@]}" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$tmp" "$MIRROR"
mv "$tmp" "$OUT"
trap - EXIT
