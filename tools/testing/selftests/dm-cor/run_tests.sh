#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# run_tests.sh [TEST...]: run the dm-cor selftests and print KTAP.
# run_tests.sh --list: print the Makefile's tests, one a line.
#
# Runs the tests named on the command line, or else every test in the
# Makefile's TEST_PROGS, one after the other, each under the timeout of
# ./settings (timeout=N seconds; COR_TEST_TIMEOUT overrides).  Each test's
# own KTAP output is indented under it.  A test exiting 0 passes, 4 is
# skipped, anything else (or a timeout) fails.  The last line is
# "N passed, N failed, N skipped"; the exit status is 0 only if none failed.

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$DIR" || exit 2

timeout_s=45
if [ -r settings ]; then
	t=$(sed -n 's/^timeout=\([0-9][0-9]*\)[[:space:]]*$/\1/p' settings | tail -n 1)
	[ -n "$t" ] && timeout_s=$t
fi
[ -n "$COR_TEST_TIMEOUT" ] && timeout_s=$COR_TEST_TIMEOUT

makefile_tests()
{
	awk '
		{ line = line $0 }
		/\\$/ { sub(/\\$/, " ", line); next }
		{
			if (line ~ /^[ \t]*TEST_PROGS[ \t]*[:+]?=/) {
				sub(/^[^=]*=/, "", line)
				n = split(line, w, /[ \t]+/)
				for (i = 1; i <= n; i++) if (w[i] != "") print w[i]
			}
			line = ""
		}' Makefile
}

if [ "$1" = --list ]; then
	makefile_tests
	exit
elif [ $# -gt 0 ]; then
	tests=("$@")
else
	# no process substitution: the test VM may lack /dev/fd
	# shellcheck disable=SC2207
	tests=($(makefile_tests))
fi

have_timeout=
command -v timeout >/dev/null 2>&1 && have_timeout=1

echo "KTAP version 1"
echo "1..${#tests[@]}"

n=0 passed=0 failed=0 skipped=0
log=$(mktemp "${TMPDIR:-/tmp}/cor-run.XXXXXX")
trap 'rm -f "$log"' EXIT

for t in "${tests[@]}"; do
	n=$((n + 1))
	name=$(basename "$t")
	path=$t
	[[ "$path" == */* ]] || path=./$t
	echo "# selftests: dm-cor: $name"
	if [ ! -f "$path" ]; then
		echo "not ok $n $name # test not found"
		failed=$((failed + 1))
		continue
	fi
	cmd=("$path")
	[ -x "$path" ] || cmd=(bash "$path")
	start=$SECONDS
	if [ -n "$have_timeout" ]; then
		timeout -s TERM -k 30 "$timeout_s" "${cmd[@]}" </dev/null 2>&1
	else
		"${cmd[@]}" </dev/null 2>&1
	fi | while IFS= read -r line; do
		printf '%s\n' "$line" >>"$log"
		printf '    %s\n' "$line"
	done
	rc=${PIPESTATUS[0]}
	secs=$((SECONDS - start))
	echo "# $name: ${secs}s"
	case $rc in
	0)
		echo "ok $n $name"
		passed=$((passed + 1))
		;;
	4)
		reason=$(sed -n 's/^1\.\.0 # SKIP //p' "$log" | tail -n 1)
		[ -n "$reason" ] ||
			reason=$(sed -n 's/^ok [0-9][0-9]* .* # SKIP //p' "$log" | head -n 1)
		echo "ok $n $name # SKIP ${reason:-prerequisite missing}"
		skipped=$((skipped + 1))
		;;
	124|137)
		echo "# $name: TIMEOUT after ${secs}s (limit ${timeout_s}s)"
		echo "not ok $n $name # TIMEOUT ${timeout_s} seconds"
		failed=$((failed + 1))
		;;
	*)
		echo "# $name: exit=$rc after ${secs}s"
		echo "not ok $n $name # exit=$rc"
		failed=$((failed + 1))
		;;
	esac
	: >"$log"
done

echo "# Totals: pass:$passed fail:$failed xfail:0 xpass:0 skip:$skipped error:0"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
