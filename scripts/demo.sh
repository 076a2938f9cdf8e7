#!/bin/bash
# dm-cor end-to-end demo: installs the dependencies, builds the module for
# the 6.12 Debian kernel and runs scripts/demo-guest.sh in a QEMU VM.
#
# Usage: scripts/demo.sh [--kernel 6.12|6.1|<uname -r>] [--no-deps]
# The module is built with `make KVER=<uname -r>`, which puts it at
# build/<uname -r>/dm-cor.ko. VM output lands in build/vm/demo-<uname -r>/
# (console.log, dmesg.txt).
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
die() { echo "demo: error: $*" >&2; exit 1; }

kernel=6.12 deps=1
while (($#)); do
	case $1 in
		--kernel) kernel=${2:?--kernel needs a value}; shift 2 ;;
		--no-deps) deps=0; shift ;;
		-h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
		*) die "unknown argument '$1' (try --help)" ;;
	esac
done

cd "$REPO"
if ((deps)); then
	scripts/install-deps.sh || die "installing dependencies failed"
fi
kver=$(scripts/vm-run.sh --kernel "$kernel" --print-kver)
[[ -f Makefile ]] || die "no top-level Makefile in $REPO: cannot build the module"
echo "demo: building dm-cor for $kver (make KVER=$kver)"
make -s KVER="$kver" || die "module build failed (make KVER=$kver)"
module=build/$kver/dm-cor.ko
[[ -f $module ]] || die "the build did not produce $module (expected from make KVER=$kver)"

echo "demo: booting $kver and running scripts/demo-guest.sh"
exec scripts/vm-run.sh --kernel "$kver" --module "$module" --timeout 600 \
	--out "build/vm/demo-$kver" -- bash /dm-cor/scripts/demo-guest.sh
