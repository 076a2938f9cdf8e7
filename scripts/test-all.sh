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

# tally_selftests NAME LOG RC SECS: add the counts of the summary line
# that run_tests.sh printed into LOG (a VM's output, exit status RC) to the
# totals
tally_selftests() {
	local name=$1 log=$2 rc=$3 secs=$4 summary p f s
	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -z "$summary" ]; then
		record fail "selftests on $name" "no summary from the VM (exit $rc)"
		return
	fi
	read -r p _ f _ s _ <<<"${summary//,/}"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + ${s:-0}))
	results+=("        selftests on $name: $summary ($secs s)")
	if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
		record fail "selftests on $name" "VM exited $rc"
	fi
}

# vm_selftests NAME LOG VM-RUN-ARGS...: run the selftests in a VM (the
# arguments end with run_tests.sh and its own), output also in LOG
vm_selftests() {
	local name=$1 log=$2 t0 rc
	shift 2
	t0=$(date +%s)
	scripts/vm-run.sh "$@" </dev/null | tee "$log"
	rc=${PIPESTATUS[0]}
	tally_selftests "$name" "$log" "$rc" $(($(date +%s) - t0))
}

# Seconds each test took on the debug kernel under TCG, two VMs side by
# side: the weights that spread the suite over the debug VMs.  A test not
# listed counts 100.
declare -A debug_secs=(
	[test_ctr.sh]=128 [test_pattern.sh]=70 [test_partial_io.sh]=66
	[test_race.sh]=88 [test_fio.sh]=44 [test_reload.sh]=102
	[test_discard.sh]=141 [test_readonly.sh]=115 [test_faults.sh]=117
	[test_flush.sh]=99 [test_status.sh]=136 [test_corctl.sh]=111
	[test_tools.sh]=63 [test_hydration.sh]=659 [test_stacking.sh]=66
	[test_replay.sh]=300 [test_metadata.sh]=530 [test_fsreplay.sh]=150
	[test_cortab.sh]=45 [test_lvm.sh]=72
)

# spread_tests N TEST...: print N lines of tests, the longest placed first,
# each on the line with the fewest seconds so far
spread_tests() {
	local n=$1 i best t secs
	shift
	local -a line sum
	for ((i = 0; i < n; i++)); do line[i]=''; sum[i]=0; done
	while read -r secs t; do
		best=0
		for ((i = 1; i < n; i++)); do
			((sum[i] < sum[best])) && best=$i
		done
		line[best]+="${line[best]:+ }$t"
		sum[best]=$((sum[best] + secs))
	done < <(for t in "$@"; do echo "${debug_secs[$t]:-100} $t"; done | sort -k1,1nr -k2)
	for ((i = 0; i < n; i++)); do echo "${line[i]}"; done
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

# The patch series first: the debug kernel (below) is built from it in the
# background, at a lower priority, while the rest runs
mkdir -p build
series_ok=0
scripts/make-series.sh --check >build/series.log 2>&1 && series_ok=1
debug_pid=
rm -f build/debug-kernel.dir build/debug-kernel.secs
if [ "${DMCOR_DEBUG_KERNEL:-1}" != 0 ] && [ $series_ok = 1 ]; then
	echo "== building the debug kernel in the background (log: build/debug-kernel.log)"
	(
		t0=$(date +%s)
		nice -n 10 scripts/build-debug-kernel.sh --series build/series \
			>build/debug-kernel.dir 2>build/debug-kernel.log &&
			echo $(($(date +%s) - t0)) >build/debug-kernel.secs
	) &
	debug_pid=$!
fi

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
if [ $series_ok = 1 ]; then
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

# The Debian packages (scripts/package-test.sh: make deb, lintian, install
# on this machine, DKMS's module for each kernel smoke-tested in a VM,
# purge): about two minutes, run in the background at a lower priority
# beside the selftests, recorded before the summary (package_pid).
# DMCOR_PACKAGE_TEST=0 skips it.
package_pid=
if [ "${DMCOR_PACKAGE_TEST:-1}" != 0 ]; then
	echo "== package test in the background (log: build/package-test.log)"
	nice -n 10 scripts/package-test.sh "${kernels[@]}" </dev/null >build/package-test.log 2>&1 &
	package_pid=$!
fi

# Selftests, one VM per kernel
for k in "${kernels[@]}"; do
	kver=$(resolve_kver "$k") || continue
	[ -f "build/$kver/dm-cor.ko" ] || { record fail "selftests-$k" "no module"; continue; }
	echo "== selftests on $kver"
	vm_selftests "$kver" "build/selftests-$kver.log" --kernel "$kver" \
		--module "build/$kver/dm-cor.ko" --out "build/vm/$kver-selftests" \
		-- tools/testing/selftests/dm-cor/run_tests.sh
done

# The debug kernel (KASAN, lockdep, kmemleak, DEBUG_ATOMIC_SLEEP) built
# from linux-source-6.12 plus the series, dm-cor built in: the whole suite
# on it as a third kernel, spread over DMCOR_DEBUG_VMS VMs (default 2, one
# per host core: nothing else runs by then) that run side by side.  Any
# report fails the run (vm-run.sh and debug-kernel-check.sh).
# DMCOR_DEBUG_TESTS: only these tests there; DMCOR_DEBUG_KERNEL=0 skips
# the stage.
if [ "${DMCOR_DEBUG_KERNEL:-1}" = 0 ]; then
	record skip "debug kernel" "DMCOR_DEBUG_KERNEL=0"
elif [ -z "$debug_pid" ]; then
	record fail "debug kernel" "no patch series to build it from"
else
	t0=$(date +%s)
	echo "== waiting for the debug kernel build"
	wait "$debug_pid"
	dk=$(cat build/debug-kernel.dir 2>/dev/null)
	if [ -s build/debug-kernel.secs ] && [ -f "$dk/done" ]; then
		how=$(grep -oE 'built [^ ]+ in [0-9]+s|cache hit' build/debug-kernel.log | tail -n 1)
		how="${how:-?}, $(cat build/debug-kernel.secs) s in the background"
		record pass "debug kernel build ($(cat "$dk/kernel.release"): $how, waited $(($(date +%s) - t0)) s)"
		read -ra tests <<<"${DMCOR_DEBUG_TESTS:-$(tools/testing/selftests/dm-cor/run_tests.sh --list | xargs)}"
		vms=${DMCOR_DEBUG_VMS:-2}
		[[ $vms =~ ^[1-9][0-9]*$ ]] || { echo "DMCOR_DEBUG_VMS=$vms: not a count; using 2"; vms=2; }
		mapfile -t groups < <(spread_tests "$vms" "${tests[@]}")
		t0=$(date +%s)
		pids=() outs=()
		rm -f build/selftests-debug-*.rc
		for i in "${!groups[@]}"; do
			[ -n "${groups[i]}" ] || continue
			out=build/vm/debug-selftests-$i
			outs+=("$out")
			echo "== selftests on the debug kernel, VM $i: ${groups[i]}"
			# bounds: a hang must not eat CI's time (a VM's share: ~20 min);
			# polls wait 3 times longer (the kernel is 2-4 times slower).
			# The replays are smaller there, for time: the block replay
			# half the writes (546 s with the defaults), the filesystem
			# replay ext4 on cor only, fewer points and operations (341
			# s); the stock kernels' VMs run them in full
			# shellcheck disable=SC2086
			(
				vm_t0=$(date +%s)
				scripts/vm-run.sh --kernel-image "$dk" --out "$out" \
					--timeout 3600 --env COR_TEST_TIMEOUT=900 \
					--env COR_WAIT_TIMEOUT=60 --env COR_FSREPLAY_FS=ext4 \
					--env COR_FSREPLAY_CONTROL_FS=none \
					--env COR_FSREPLAY_POINTS=3 --env COR_FSREPLAY_OPS=200 \
					--env COR_REPLAY_WRITES=1500 --env COR_REPLAY_RANDOM=50 \
					-- tools/testing/selftests/dm-cor/run_tests.sh ${groups[i]} \
					</dev/null >build/selftests-debug-$i.log 2>&1
				echo "$? $(($(date +%s) - vm_t0))" >build/selftests-debug-$i.rc
			) &
			pids+=($!)
		done
		[ ${#pids[@]} -gt 0 ] || record fail "selftests on the debug kernel" "no test to run"
		wait "${pids[@]}"
		results+=("        debug kernel VMs, side by side: $(($(date +%s) - t0)) s")
		for i in "${!groups[@]}"; do
			[ -n "${groups[i]}" ] || continue
			echo "== output of debug VM $i"
			cat "build/selftests-debug-$i.log"
			read -r vm_rc vm_secs <"build/selftests-debug-$i.rc" || vm_rc=125
			tally_selftests "the debug kernel, VM $i" "build/selftests-debug-$i.log" \
				"${vm_rc:-125}" "${vm_secs:-?}"
		done
		what="debug kernel reports (KASAN, lockdep, kmemleak, atomic sleep)"
		if scripts/debug-kernel-check.sh "${outs[@]}" >build/debug-reports.log 2>&1; then
			record pass "$what: none"
		else
			record fail "$what" "$(head -n 20 build/debug-reports.log)"
		fi
	else
		record fail "debug kernel build" "$(tail -n 10 build/debug-kernel.log)"
	fi
fi

# The package test started after the tools build
if [ -z "$package_pid" ]; then
	record skip "Debian packages" "DMCOR_PACKAGE_TEST=0"
elif wait "$package_pid"; then
	record pass "Debian packages ($(grep -c '^ok ' build/package-test.log) checks, $(
		tail -n 1 build/package-test.log | grep -oE '[0-9]+ s'))"
else
	record fail "Debian packages" "$(grep -E '^FAILED|^package test:' build/package-test.log |
		head -n 6 || tail -n 5 build/package-test.log)"
fi

echo
echo "== summary ($(($(date +%s) - start)) s)"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
