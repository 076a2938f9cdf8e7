#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The whole dm-cor suite, as CI runs it: install dependencies, build the
# module for both Debian kernels with W=1 and sparse, checkpatch --strict,
# build the tools, then run the selftests in a VM per kernel.  Ends with
# one line "N passed, N failed, N skipped"; exits non-zero on any failure.
#
# usage: scripts/test-all.sh [KERNEL...]     (default: 6.1 6.12)
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)

passed=0 failed=0 skipped=0
results=()

record() {	# record <pass|fail|skip> <name> [detail]
	case $1 in
	pass) passed=$((passed + 1)); results+=("ok      $2") ;;
	fail) failed=$((failed + 1)); results+=("FAILED  $2${3:+: $3}") ;;
	skip) skipped=$((skipped + 1)); results+=("skipped $2${3:+: $3}") ;;
	esac
	echo "== $1: $2${3:+: $3}"
}

resolve_kver() {	# 6.1 -> 6.1.0-56-amd64, from the installed images
	local img
	img=$(ls -1 /boot/vmlinuz-"$1".* 2>/dev/null | sort -V | tail -n 1)
	[ -n "$img" ] && basename "$img" | sed 's/^vmlinuz-//'
}

start=$(date +%s)
echo "== installing dependencies"
if ! scripts/install-deps.sh; then
	echo "dependency installation failed"
	echo "0 passed, 1 failed"
	exit 1
fi

checkpatch=$(scripts/get-checkpatch.sh) || checkpatch=

# Static checks: each build must be free of warnings and sparse reports
for k in "${kernels[@]}"; do
	kver=$(resolve_kver "$k")
	if [ -z "$kver" ]; then
		record fail "build-$k" "no kernel image for $k in /boot"
		continue
	fi
	log=build/build-$kver.log
	mkdir -p build
	rm -rf "build/$kver"
	if make KVER="$kver" W=1 C=2 >"$log" 2>&1 && [ -f "build/$kver/dm-cor.ko" ]; then
		findings=$(grep -E 'warning:|error:|sparse:' "$log" | grep -v '^make' || true)
		if [ -n "$findings" ]; then
			record fail "build-$kver (W=1, sparse)" "$(echo "$findings" | head -n 5)"
		else
			record pass "build-$kver (W=1, sparse)"
		fi
	else
		record fail "build-$kver (W=1, sparse)" "$(tail -n 20 "$log")"
	fi
done

if [ -n "$checkpatch" ]; then
	if out=$(make -s check CHECKPATCH="$checkpatch" 2>&1); then
		record pass "checkpatch --strict"
	else
		record fail "checkpatch --strict" "$out"
	fi
else
	record fail "checkpatch --strict" "checkpatch.pl not available"
fi

if grep -nE '^[[:space:]]*#[[:space:]]*(if|ifdef|ifndef|elif)' drivers/md/*.c; then
	record fail "no #if in .c files"
else
	record pass "no #if in .c files"
fi

# The in-tree patch series: checkpatch per patch, then applied to a fresh
# linux-source-6.12 tree and built there (=m and =y, W=1, sparse)
if scripts/make-series.sh --check >build/series.log 2>&1; then
	record pass "patch series: $(grep -c '^0.*: clean$' build/series.log) patches checkpatch --strict clean"
	if scripts/check-series.sh >build/check-series.log 2>&1; then
		record pass "patch series applies and builds in tree (DM_COR=m and =y, W=1, sparse)"
	else
		record fail "patch series in tree" "$(tail -n 10 build/check-series.log)"
	fi
else
	record fail "patch series" "$(grep -v ': clean$' build/series.log | tail -n 10)"
fi

if make -s tools >build/tools.log 2>&1; then
	record pass "tools build"
	if make -s -C tools/dm-cor check >build/tools-check.log 2>&1; then
		record pass "tools CLI contract ($(grep -c '^ok ' build/tools-check.log) subtests, host)"
	else
		record fail "tools CLI contract (host)" "$(grep -E '^not ok|FAIL' build/tools-check.log | head -n 5)"
	fi
else
	record fail "tools build" "$(tail -n 20 build/tools.log)"
fi

# Selftests, one VM per kernel
for k in "${kernels[@]}"; do
	kver=$(resolve_kver "$k") || continue
	[ -f "build/$kver/dm-cor.ko" ] || { record fail "selftests-$k" "no module"; continue; }
	out=build/vm/$kver-selftests
	t0=$(date +%s)
	echo "== selftests on $kver"
	scripts/vm-run.sh --kernel "$kver" --module "build/$kver/dm-cor.ko" --out "$out" \
		-- tools/testing/selftests/dm-cor/run_tests.sh </dev/null | tee "build/selftests-$kver.log"
	rc=${PIPESTATUS[0]}
	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "build/selftests-$kver.log" | tail -n 1)
	if [ -z "$summary" ]; then
		record fail "selftests-$k" "no summary from the VM (exit $rc)"
		continue
	fi
	read -r p _ f _ s _ <<<"${summary//,/}"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + ${s:-0}))
	results+=("        selftests on $kver: $summary ($(($(date +%s) - t0)) s)")
	if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
		record fail "selftests-$k" "VM exited $rc"
	fi
done

echo
echo "== summary ($(($(date +%s) - start)) s)"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
