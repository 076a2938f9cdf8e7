#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Prove the patch series (scripts/make-series.sh) against a fresh tree:
# extract Debian's linux-source-6.12, commit it, `git am` every patch, then
# build dm-cor in the tree as a module and built in (a minimal config:
# allnoconfig plus the block layer and device-mapper), each with W=1 and
# sparse (C=2).  Any warning or sparse report in a dm-cor file, a failing
# `git am` or a failing build fails the check.
#
# usage: scripts/check-series.sh [--git-am] [SERIES_DIR]  (default build/series)
#
# By default the patches are applied with `git apply` (git am's own patch
# engine) to the extracted tree, which takes seconds; --git-am commits the
# whole tree first and runs `git am`, as a maintainer would (minutes).
set -euo pipefail

use_am=0
if [ "${1:-}" = --git-am ]; then
	use_am=1
	shift
fi

top=$(cd "$(dirname "$0")/.." && pwd)
series=$(realpath "${1:-$top/build/series}")
tarball=/usr/src/linux-source-6.12.tar.xz
work=${DMCOR_SERIES_WORK:-$HOME/.cache/dm-cor/series-check}
jobs=$(nproc)

[ -f "$tarball" ] || { echo "check-series: $tarball is missing (apt-get install linux-source-6.12)" >&2; exit 1; }
ls "$series"/0*.patch >/dev/null 2>&1 || { echo "check-series: no patches in $series" >&2; exit 1; }

t0=$(date +%s)
rm -rf "$work"
mkdir -p "$work"
tar -C "$work" -xJf "$tarball"
tree=$(echo "$work"/linux-source-6.12)
cd "$tree"
patches=()
for p in "$series"/0*.patch; do
	case $p in *0000-cover-letter.patch) ;; *) patches+=("$p") ;; esac
done
if [ $use_am -eq 1 ]; then
	git init -q .
	git config user.name "dm-cor developers"
	git config user.email "dm-cor@example.org"
	git add -A -f . >/dev/null	# Debian's .gitignore ignores the top level
	git commit -q -m "Debian linux-source-6.12"
	echo "== fresh tree committed ($(($(date +%s) - t0)) s)"
	git am -q "${patches[@]}"
	echo "== git am: ${#patches[@]} patches applied"
	git log --oneline -n "${#patches[@]}"
else
	for p in "${patches[@]}"; do
		git apply --whitespace=error-all "$p"
		echo "== applied $(basename "$p")"
	done
fi

make -s allnoconfig
scripts/config --enable 64BIT --enable MODULES --enable MODULE_UNLOAD --enable BLOCK \
	--enable MD --enable BLK_DEV_DM --module DM_MIRROR --module DM_COR
make -s olddefconfig

# build_cor M|Y: build drivers/md with W=1 C=2; fail on any dm-cor finding
build_cor() {
	local log=$work/build-$1.log findings

	make -s -j"$jobs" W=1 C=2 drivers/md/ >"$log" 2>&1 || { tail -n 30 "$log"; return 1; }
	findings=$(grep -E 'dm-cor|dm-kcopyd|dm-raid1|blk_types' "$log" | grep -E 'warning|error|sparse' || true)
	if [ -n "$findings" ]; then
		echo "$findings"
		return 1
	fi
	ls drivers/md/dm-cor*.o >/dev/null
}

grep -q '^CONFIG_DM_COR=m' .config || { echo "check-series: CONFIG_DM_COR=m did not stick" >&2; exit 1; }
build_cor M
[ -f drivers/md/dm-cor.o ] && echo "== CONFIG_DM_COR=m: W=1 and sparse clean"

scripts/config --enable DM_COR
make -s olddefconfig
grep -q '^CONFIG_DM_COR=y' .config || { echo "check-series: CONFIG_DM_COR=y did not stick" >&2; exit 1; }
build_cor Y
grep -q dm-cor drivers/md/built-in.a 2>/dev/null || ar t drivers/md/built-in.a | grep -q dm-cor
echo "== CONFIG_DM_COR=y: W=1 and sparse clean"
echo "== series check passed ($(($(date +%s) - t0)) s)"
