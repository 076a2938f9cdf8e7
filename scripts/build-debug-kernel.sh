#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the debug kernel of the dm-cor test VM (KASAN, lockdep, kmemleak,
# DEBUG_ATOMIC_SLEEP, DEBUG_LIST, device-mapper and the dm test targets
# built in) from Debian's linux-source-6.12 plus an optional patch series,
# and cache it outside the repo.
#
# Usage: scripts/build-debug-kernel.sh [--series DIR] [--jobs N] [--print-key]
#   --series DIR   apply DIR/*.patch (git format-patch files, in name order;
#                  files without a diff, e.g. a cover letter, are skipped)
#                  to the tree first, with `git apply` (no fuzz, like git
#                  am); when the series adds CONFIG_DM_COR it is built in
#   --jobs N       make -j (default: nproc)
#   --print-key    print the cache key and exit
# Prints the cache directory (the only line on stdout; progress on stderr):
#   DIR/vmlinux       PVH-bootable ELF (what vm-run.sh boots)
#   DIR/bzImage
#   DIR/.config, DIR/build.log, DIR/kernel.release (uname -r in the guest)
#   DIR/modroot/lib/modules/KREL/  modules.builtin etc. (for the initramfs)
#   DIR/src/          the configured, built tree: KDIR for an out-of-tree
#                     dm-cor.ko when the series does not build it in:
#                     make KDIR=DIR/src KVER=$(cat DIR/kernel.release)
#   DIR/dm-cor-builtin  exists when CONFIG_DM_COR=y
#   DIR/series/       the patches applied (a snapshot)
# DIR is ${DMCOR_DEBUG_KERNEL_CACHE:-~/.cache/dm-cor/debug-kernel}/KEY, KEY
# the sha256 of scripts/debug-kernel.config, the diffs of the series that
# can go into the kernel (not the selftests, .rst files, MAINTAINERS), the
# linux-source-6.12 package version and this script's BUILD_EPOCH.  A
# cache hit prints DIR at once.  Compiles go through ccache when it is
# installed.
# Boot it with: scripts/vm-run.sh --kernel-image DIR [--module KO] -- CMD
set -euo pipefail

# Bump when the way the kernel is built changes (invalidates the cache).
BUILD_EPOCH=1

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$SELF")")
FRAGMENT=$REPO/scripts/debug-kernel.config
TARBALL=/usr/src/linux-source-6.12.tar.xz
CACHE=${DMCOR_DEBUG_KERNEL_CACHE:-${HOME:-/root}/.cache/dm-cor/debug-kernel}
KEEP=3	# build trees kept (the newest ones); older keys keep their images

die() { echo "build-debug-kernel: error: $*" >&2; exit 1; }
log() { echo "build-debug-kernel: $*" >&2; }

series='' jobs=$(nproc) print_key=0
while (($#)); do
	case $1 in
		--series) series=${2:?--series needs a directory}; shift 2 ;;
		--jobs) jobs=${2:?}; shift 2 ;;
		--print-key) print_key=1; shift ;;
		-h|--help) awk 'NR > 2 && /^#/ { sub(/^# ?/, ""); print; next } NR > 2 { exit }' "$SELF"; exit 0 ;;
		*) die "unknown argument '$1' (try --help)" ;;
	esac
done
[[ -f $TARBALL ]] || die "missing $TARBALL (apt-get install linux-source-6.12)"
[[ -f $FRAGMENT ]] || die "missing $FRAGMENT"
patches=()
snap=''
if [[ -n $series ]]; then
	[[ -d $series ]] || die "--series '$series' is not a directory"
	series=$(readlink -f "$series")
	# a snapshot, so that a series rewritten meanwhile cannot mix in
	snap=$(mktemp -d "${TMPDIR:-/tmp}/dmcor-series.XXXXXX")
	trap 'rm -rf "$snap"' EXIT
	while read -r p; do
		if grep -q '^diff --git ' "$p"; then
			cp "$p" "$snap/"
			patches+=("$snap/${p##*/}")
		else
			log "skipping ${p##*/} (no diff)"
		fi
	done < <(find "$series" -maxdepth 1 -name '*.patch' | LC_ALL=C sort)
	((${#patches[@]})) || die "no *.patch with a diff in $series"
fi

src_version=$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null) ||
	src_version=$(stat -c '%s %Y' "$TARBALL")
key=$( {
	echo "epoch $BUILD_EPOCH"
	echo "source $src_version"
	echo "fragment"
	cat "$FRAGMENT"
	for p in "${patches[@]}"; do
		echo "patch ${p##*/}"
		# only the diffs that can go into the kernel: not the commit
		# message (with the id and date each make-series.sh run renews),
		# nor the selftests, .rst files or MAINTAINERS (a test or doc
		# change reuses the kernel; tools/objtool and Kconfig files count)
		awk 'function doc(f) {
			return f ~ /^[ab]\/tools\/testing\/selftests\// ||
			       f ~ /^[ab]\/Documentation\/.*\.rst$/ || f ~ /^[ab]\/MAINTAINERS$/
		     }
		     /^diff --git / { keep = !(doc($3) && doc($4)) }
		     keep' "$p"
	done
} | sha256sum | cut -c1-16)
if ((print_key)); then
	echo "$key"
	exit 0
fi

dir=$CACHE/$key
mkdir -p "$CACHE"
exec 9>"$CACHE/.$key.lock"
flock 9
if [[ -f $dir/done ]]; then
	log "cache hit ($(cat "$dir/kernel.release"))"
	echo "$dir"
	exit 0
fi

t0=$EPOCHREALTIME
rm -rf "$dir"
mkdir -p "$dir"
buildlog=$dir/build.log
: >"$buildlog"
src=$dir/src
if [[ -n $snap ]]; then
	mkdir -p "$dir/series"
	cp "${patches[@]}" "$dir/series/"
fi

log "extracting $TARBALL into $src"
mkdir -p "$src"
tar -C "$src" --strip-components=1 -xJf "$TARBALL" || die "extracting $TARBALL failed"

for p in "${patches[@]}"; do
	log "applying ${p##*/}"
	# git apply works outside a repository and refuses fuzz, like git am
	if ! (cd "$src" && GIT_CEILING_DIRECTORIES=$CACHE git apply -p1 --whitespace=nowarn "$p") >>"$buildlog" 2>&1; then
		tail -n 5 "$buildlog" >&2
		rm -rf "$src"
		die "patch ${p##*/} does not apply (see $buildlog)"
	fi
done

frag=$dir/fragment.config
cp "$FRAGMENT" "$frag"
builtin=0
if grep -q '^config DM_COR$' "$src/drivers/md/Kconfig"; then
	builtin=1
	printf '\n# added by build-debug-kernel.sh: the series provides dm-cor\nCONFIG_DM_COR=y\n' >>"$frag"
fi

# Stable inputs, so that ccache hits across trees and rebuilds.
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2026'
export KBUILD_BUILD_USER=dmcor KBUILD_BUILD_HOST=dmcor-debug
mk=(make -C "$src" ARCH=x86_64 -j"$jobs")
if command -v ccache >/dev/null; then
	export CCACHE_BASEDIR=$src CCACHE_NOHASHDIR=1
	export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-8G}
	mk+=(CC="ccache gcc")
else
	log "note: ccache not installed; rebuilds will be slow"
fi

log "configuring (allnoconfig + $(basename "$FRAGMENT")${patches:+ + series})"
{
	"${mk[@]}" KCONFIG_ALLCONFIG="$frag" allnoconfig &&
		"${mk[@]}" olddefconfig
} >>"$buildlog" 2>&1 || die "configuring failed (see $buildlog)"

# Every option of the fragment must have survived olddefconfig.
bad=()
while IFS= read -r line; do
	case $line in
		CONFIG_*=*) grep -qxF "$line" "$src/.config" || bad+=("$line") ;;
		'# CONFIG_'*' is not set')
			opt=${line#\# }; opt=${opt%% *}
			grep -q "^$opt=" "$src/.config" && bad+=("$line") ;;
	esac
done <"$frag"
if ((${#bad[@]})); then
	printf 'build-debug-kernel: not set as required: %s\n' "${bad[@]}" >&2
	die "the config fragment did not apply (dependencies?); see $src/.config"
fi
log "config ok: $(grep -c '=y$' "$src/.config") options =y"

log "building with -j$jobs (log: $buildlog)"
tb=$EPOCHREALTIME
if ! "${mk[@]}" vmlinux bzImage modules >>"$buildlog" 2>&1; then
	grep -E 'error|Error' "$buildlog" | tail -n 20 >&2
	die "kernel build failed (see $buildlog)"
fi
"${mk[@]}" INSTALL_MOD_PATH="$dir/modroot" modules_install >>"$buildlog" 2>&1 ||
	die "modules_install failed (see $buildlog)"
krel=$(cat "$src/include/config/kernel.release")
rm -f "$dir/modroot/lib/modules/$krel/build" "$dir/modroot/lib/modules/$krel/source"

readelf -n "$src/vmlinux" 2>/dev/null | grep -q 'Xen .*(0x00000012)' ||
	die "vmlinux has no PVH entry note (CONFIG_PVH?)"
cp "$src/vmlinux" "$dir/vmlinux"
cp "$src/arch/x86/boot/bzImage" "$dir/bzImage"
cp "$src/.config" "$dir/.config"
echo "$krel" >"$dir/kernel.release"
((builtin)) && touch "$dir/dm-cor-builtin"
if command -v ccache >/dev/null; then
	ccache -s 2>/dev/null | grep -iE 'hits|misses' | head -n 4 | sed 's/^/build-debug-kernel: ccache: /' >&2 || true
fi
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
bsecs=$(awk -v a="$tb" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
echo "build time: ${secs}s total, ${bsecs}s make (-j$jobs)" >>"$buildlog"
touch "$dir/done"
if ((builtin)); then how='built in'; else how="not in the tree: make KDIR=$src KVER=$krel"; fi
log "built $krel in ${secs}s (make ${bsecs}s, -j$jobs); dm-cor $how"

# Keep the build trees of the newest $KEEP keys only (they are ~GBs).
flock -u 9
ls -1dt "$CACHE"/*/src 2>/dev/null | tail -n +$((KEEP + 1)) | while read -r old; do
	[[ $old == "$src" ]] && continue
	log "pruning old build tree $old"
	rm -rf "$old"
done
echo "$dir"
