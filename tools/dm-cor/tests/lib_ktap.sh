# SPDX-License-Identifier: GPL-2.0
#
# lib_ktap.sh: the KTAP subtests of the host tests (test_tools.sh,
# test_cortab.sh), in the style of the selftests' lib.sh.  run NAME FN
# runs one subtest; fail and skip record its result; the caller prints the
# plan and the totals from CNT, NFAIL and NSKIP.

CNT=0 NFAIL=0 NSKIP=0
ERRS=() SKIP=

diag()
{
	printf '%s\n' "$@" | sed 's/^/# /'
}

fail()
{
	ERRS+=("$*")
	diag "FAIL: $*"
	return 1
}

skip()
{
	SKIP="$*"
	return 4
}

run()
{
	local name=$1

	shift
	ERRS=() SKIP=
	"$@"
	local rc=$?
	CNT=$((CNT + 1))
	if [ -n "$SKIP" ]; then
		NSKIP=$((NSKIP + 1))
		echo "ok $CNT $name # SKIP $SKIP"
	elif [ ${#ERRS[@]} -gt 0 ] || [ $rc -ne 0 ]; then
		NFAIL=$((NFAIL + 1))
		[ ${#ERRS[@]} -eq 0 ] && diag "returned $rc"
		echo "not ok $CNT $name"
	else
		echo "ok $CNT $name"
	fi
}
