#!/bin/bash
# Install (idempotently) every Debian 12 package the dm-cor project needs:
# the QEMU VM harness, both guest kernels with headers (module builds), the
# 6.12 source (in-tree patches), and the guest userspace copied into the
# initramfs by scripts/mkinitramfs.sh.
#
# Usage: scripts/install-deps.sh [--check]
#   --check   only report missing packages; exit 1 if any are missing.
# Runs non-interactively (CI as root, no tty). `apt-get update` runs at most
# once, and only when something is missing.
set -euo pipefail

PACKAGES=(
	# VM harness
	qemu-system-x86 cpio xz-utils zstd busybox-static kmod
	# guest kernels + headers for building the module, 6.12 source tree
	linux-image-amd64 linux-headers-amd64
	linux-image-6.12-amd64 linux-headers-6.12-amd64 linux-source-6.12
	build-essential bc sparse perl libdevmapper-dev ccache flex bison libelf-dev unifdef git python3
	# Debian packages (make deb, scripts/package-test.sh); openssl: dkms's signing key
	dkms dh-dkms debhelper lintian openssl
	# guest userspace (tests, demo)
	dmsetup fio util-linux mount bsdextrautils e2fsprogs xfsprogs diffutils gawk
	coreutils grep sed findutils procps
	# lvm2 in the guest (LVM over and under cor devices); thin_check & co.
	# for thin pools
	lvm2 thin-provisioning-tools
)

die() { echo "install-deps: error: $*" >&2; exit 1; }

check_only=0
case "${1:-}" in
	--check) check_only=1 ;;
	-h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	'') ;;
	*) die "unknown argument '$1' (try --help)" ;;
esac

# missing_from PKG...: print the packages that are not fully installed.
missing_from() {
	local -A ok=()
	local name st
	while read -r name st; do
		[[ $st == ii ]] && ok[$name]=1
	done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "$@" 2>/dev/null || true)
	for name in "$@"; do
		[[ -n ${ok[$name]:-} ]] || echo "$name"
	done
}

mapfile -t missing < <(missing_from "${PACKAGES[@]}")

if ((${#missing[@]} == 0)); then
	echo "install-deps: all ${#PACKAGES[@]} packages already installed"
	exit 0
fi
echo "install-deps: missing: ${missing[*]}"
((check_only)) && exit 1
[[ $(id -u) -eq 0 ]] || die "must run as root to install packages"

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
"${APT[@]}" update </dev/null || die "apt-get update failed"
"${APT[@]}" install --no-install-recommends "${missing[@]}" </dev/null ||
	die "apt-get install failed for: ${missing[*]}"

mapfile -t still < <(missing_from "${missing[@]}")
((${#still[@]} == 0)) || die "still not installed: ${still[*]}"
echo "install-deps: done"
