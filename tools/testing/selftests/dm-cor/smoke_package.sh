#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# smoke_package.sh: a quick proof that an installed dm-cor module works,
# for a module built elsewhere (scripts/package-test.sh boots each kernel
# with the module DKMS built from the dm-cor-dkms package).  Not one of the
# Makefile's TEST_PROGS: run_tests.sh does not run it.
#
# modprobe loads the module; with COR_SMOKE_MODULE_SHA256 set, the file it
# loads must have that sha256.  A cor device over slices of the scratch
# disks reads back the origin's data, cold and then warm; every region is
# then hydrated, the destination holds the origin's data, and the warm
# read did not touch the origin.  The epilogue removes the device and
# checks for leaks, the metadata, the origin and the kernel log.  The last
# line is "PASS" or "FAIL"; the exit status is 0 only with PASS.

# The subtests run through run_subtest; lib.sh's helpers take optional
# arguments, not the script's.
# shellcheck disable=SC2317,SC2119

# The test runs in a child, so that the verdict follows lib.sh's epilogue
# (which exits)
if [ -z "$COR_SMOKE_CHILD" ]; then
	COR_SMOKE_CHILD=1 "$BASH" "$0" "$@"
	rc=$?
	if [ $rc -eq 0 ]; then echo PASS; else echo "FAIL (exit $rc)"; fi
	exit $rc
fi

. "$(dirname "$0")/lib.sh"

cor_test_init
ktap_plan 4

REGION=128			# sectors (64 KiB): 256 regions of 16 MiB
cor_setup_devs 16M 16M 4M || cor_bail "cannot create the test devices"
stamp_origin || cor_bail "cannot stamp the origin"
TOTAL=$((ORIGIN_SECTORS / REGION))
COR=$(dm_path cor)
MODEL=$COR_TMP/origin
dd_read "$ORIGIN" 0 "$ORIGIN_SECTORS" "$MODEL" || cor_bail "cannot read the origin"

st_module()
{
	local ko sum

	[ -d /sys/module/dm_cor ] || { fail "dm_cor is not loaded"; return 1; }
	ko=$(modinfo -n dm-cor 2>&1) || { fail "modinfo -n dm-cor: $ko"; return 1; }
	sum=$(sha256sum "$ko" | awk '{ print $1 }')
	ktap_diag "loaded $ko, sha256 $sum, signer: $(modinfo -F signer dm-cor 2>&1)"
	[ -n "$COR_SMOKE_MODULE_SHA256" ] || return 0
	expect_eq "$sum" "$COR_SMOKE_MODULE_SHA256" "sha256 of the module modprobe loads"
}

st_cold_read()
{
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	expect_dev_matches_file "cold read" "$COR" 0 "$ORIGIN_SECTORS" "$MODEL"
}

st_hydrated()
{
	local h t copies

	wait_hydrated cor "$TOTAL" || { fail "not every region hydrated"; return 1; }
	read -r h t copies <<<"$(cor_status_fields cor hydrated total_regions copies_done)"
	ktap_diag "status: $(cor_status cor)"
	expect_eq "$h/$t" "$TOTAL/$TOTAL" "hydrated/total regions" || return
	expect_eq "$copies" "$TOTAL" "copies_done" || return
	expect_dev_matches_file "destination" "$DEST" 0 "$ORIGIN_SECTORS" "$MODEL"
}

st_warm_read()
{
	local ors0 ors1 dev0 dev1

	ors0=$(cor_status_field cor origin_read_sectors)
	dev0=$(dev_read_sectors "$ORIGIN")
	expect_dev_matches_file "warm read" "$COR" 0 "$ORIGIN_SECTORS" "$MODEL" || return
	ors1=$(cor_status_field cor origin_read_sectors)
	dev1=$(dev_read_sectors "$ORIGIN")
	expect_eq "$ors1" "$ors0" "origin_read_sectors after the warm read" || return
	expect_eq "$dev1" "$dev0" "sectors read from the origin device"
}

run_subtest "module loads (modprobe dm-cor)" st_module
run_subtest "cold read returns the origin's data" st_cold_read
run_subtest "every region hydrated, destination holds the origin's data" st_hydrated
run_subtest "warm read returns the data, origin untouched" st_warm_read
cor_test_done
