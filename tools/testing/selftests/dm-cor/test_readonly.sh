#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_readonly.sh: read-only tables, volatile metadata, a shared origin.
#
# A read-only table still copies on read (copies do not change what the
# device shows): with "-" (volatile) metadata and with a metadata device,
# whose state then survives re-creation.  Writes, discards and write-zeroes
# to a read-only device fail and change nothing; "-" on a read-write table
# is refused.  One read-only volatile cor device serves as the origin of two
# writable cor devices with their own destination and metadata: both read
# the original data, each sees only its own writes, and a region that one of
# them pulled through the shared device is not read from the real origin
# again by the other.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

cor_test_init
cor_require_cmd blkdiscard fallocate
ktap_plan 6

SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors (32 KiB)
BPR=$((REGION / 8))

cor_setup_devs 16M 16M 4M || cor_bail "cannot create the test devices"
slice_create destb 1 16M && slice_create destc 1 16M && slice_create destd 3 16M &&
slice_create deste 3 16M && slice_create metab 2 1M && slice_create metac 2 1M ||
	cor_bail "cannot create the test devices"
for m in metab metac; do
	zero_dev "$(dm_path $m)" || cor_bail "cannot zero $m"
done
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
TOTAL=$((ORIGIN_SECTORS / REGION))
MODEL=$COR_TMP/model
DATA=$COR_TMP/data
"$COR_PATTERN" gen 0 "$ORIGIN_BLOCKS" "$SEED" >"$MODEL" || cor_bail "cannot build the model"
"$COR_PATTERN" gen 0 64 $((SEED + 1)) --pattern-version 1 >"$DATA" ||
	cor_bail "cannot build the data"

# reads_origin_not DEV SECTOR NR WHAT: read a range (checked against the
# origin), which must not read the origin at all
reads_origin_not()
{
	local r0 c0 name=$5

	r0=$(dev_read_sectors "$ORIGIN")
	[ -n "$name" ] && c0=$(cor_status_field "$name" origin_read_sectors)
	expect_dev_matches_file "$4" "$1" "$2" "$3" "$MODEL" || return
	expect_eq $(( $(dev_read_sectors "$ORIGIN") - r0 )) 0 \
		"$4: origin sectors read (sysfs)" || return
	[ -z "$name" ] ||
		expect_eq "$(cor_status_field "$name" origin_read_sectors)" "$c0" \
			"$4: origin_read_sectors of $name"
}

st_rw_volatile_refused()
{
	local before msg table

	before=$(klog_count)
	if dm_create rwvol "0 $ORIGIN_SECTORS cor $ORIGIN $DEST - $REGION"; then
		fail "a read-write table with '-' metadata was accepted"
		return 1
	fi
	dm_exists rwvol && { fail "refused, but the device exists"; return 1; }
	msg=$(klog_new_since "$before" | grep ': cor: ' | tail -n 1)
	ktap_diag "refused: ${msg#*: cor: }"
	[ -n "$msg" ] || { fail "no 'cor:' line in the kernel log for the refusal"; return 1; }
	table="0 $ORIGIN_SECTORS cor $ORIGIN $DEST - $REGION 1 no_discard_passdown"
	if dm_create rwvol "$table"; then
		fail "a read-write table with '-' metadata and an optional argument was accepted"
		return 1
	fi
	dm_exists rwvol && { fail "refused, but the device exists"; return 1; }
	return 0
}

st_volatile_cor()
{
	local vol r0 r1 out

	cor_create --readonly vol "$ORIGIN" "$DEST" - "$REGION" ||
		{ fail "create --readonly with '-': $COR_LAST_OUTPUT"; return 1; }
	vol=$(dm_path vol)
	expect_eq "$(blockdev --getro "$vol")" 1 "blockdev --getro" || return
	expect_eq "$(cor_status_fields vol metadata_block_size metadata_used metadata_total mode)" \
		"- - - rw" "metadata fields and mode" || return
	expect_eq "$(cor_status_field vol hydrated)" 0 \
		"hydrated regions of a fresh device" || return
	r0=$(dev_read_sectors "$ORIGIN")
	# regions 5-9 in one read, 8 sectors of region 20
	expect_dev_matches_file "read of regions 5-9" \
		"$vol" $((5 * REGION)) $((5 * REGION)) "$MODEL" &&
	expect_dev_matches_file "read in region 20" \
		"$vol" $((20 * REGION + 24)) 8 "$MODEL" || return
	r1=$(dev_read_sectors "$ORIGIN")
	expect_cmp $((r1 - r0)) -ge $((5 * REGION + 8)) \
		"origin sectors read by the cold reads" || return
	wait_hydrated vol 6 || { fail "the read-only device did not copy on read"; return 1; }
	expect_eq "$(cor_bitmap vol hydrated 0 "$TOTAL")" "5-9 20" "hydrated bitmap" || return
	expect_eq "$(cor_status_fields vol hydrated dirty hydrating copies_failed)" "6 0 0 0" \
		"hydrated, dirty, hydrating, copies_failed" || return
	# the destination holds the copies; reading them again reads no origin
	out=$("$COR_PATTERN" verify "$DEST" $((5 * BPR)) $((5 * BPR)) "$SEED" --quiet 2>&1) &&
	out=$("$COR_PATTERN" verify "$DEST" $((20 * BPR)) "$BPR" "$SEED" --quiet 2>&1) ||
		{ fail "destination does not hold the copied regions: $out"; return 1; }
	reads_origin_not "$vol" $((5 * REGION)) $((5 * REGION)) "second read of regions 5-9" vol &&
	reads_origin_not "$vol" $((20 * REGION)) "$REGION" "second read of region 20" vol
}

# try_write WHAT cmd...: the command must fail (writing to a read-only device)
try_write()
{
	local what=$1

	shift
	if "$@" </dev/null >/dev/null 2>&1; then
		fail "$what succeeded on a read-only device"
		return 1
	fi
}

st_volatile_writes_fail()
{
	local vol h0 st0 out

	vol=$(dm_path vol)
	h0=$(cor_bitmap vol hydrated 0 "$TOTAL")
	st0=$(cor_status_fields vol hydrated dirty copies_done origin_read_sectors)
	# hydrated region 6 and unhydrated region 30
	for s in $((6 * REGION)) $((30 * REGION + 8)); do
		try_write "O_DIRECT write of sector $s" dd if="$DATA" of="$vol" bs=4096 count=1 \
			seek=$((s * 512)) oflag=direct,seek_bytes conv=notrunc status=none || return
		try_write "buffered write+fsync of sector $s" \
			dd if="$DATA" of="$vol" bs=4096 count=1 \
			seek=$((s * 512)) oflag=seek_bytes conv=notrunc,fsync status=none || return
		try_write "discard of sector $s" \
			blkdiscard -f -o $((s * 512)) -l 4096 "$vol" || return
		try_write "zeroout of sector $s" \
			blkdiscard -f -z -o $((s * 512)) -l 4096 "$vol" || return
		try_write "fallocate -z at sector $s" \
			fallocate -z -o $((s * 512)) -l 4096 "$vol" || return
	done
	try_write "whole-region discard of regions 40-41" blkdiscard -f -o $((40 * REGION * 512)) \
		-l $((2 * REGION * 512)) "$vol" || return
	expect_eq "$(cor_status_fields vol hydrated dirty copies_done origin_read_sectors)" "$st0" \
		"hydrated dirty copies_done origin_read_sectors after the failed writes" || return
	expect_eq "$(cor_bitmap vol hydrated 0 "$TOTAL")" "$h0" \
		"hydrated bitmap after the failed writes" || return
	expect_eq "$(cor_bitmap vol dirty 0 "$TOTAL")" "" \
		"dirty bitmap after the failed writes" || return
	# nothing reached the destination of the never-copied regions
	out=$("$COR_PATTERN" verify "$vol" $((6 * BPR)) "$BPR" "$SEED" --quiet 2>&1) &&
	out=$("$COR_PATTERN" verify "$vol" $((30 * BPR)) "$BPR" "$SEED" --quiet 2>&1) &&
	out=$("$COR_PATTERN" verify "$vol" $((40 * BPR)) $((2 * BPR)) "$SEED" --quiet 2>&1) ||
		{ fail "data changed by a failed write: $out"; return 1; }
	cor_remove vol
}

st_readonly_metadata()
{
	local dev h out

	cor_create --readonly rom "$ORIGIN" "$(dm_path destb)" "$META" "$REGION" ||
		{ fail "create --readonly with metadata: $COR_LAST_OUTPUT"; return 1; }
	dev=$(dm_path rom)
	expect_eq "$(cor_status_fields rom metadata_block_size mode hydrated dirty)" "8 rw 0 0" \
		"metadata block size, mode, hydrated, dirty" || return
	expect_dev_matches_file "read of regions 100-103" \
		"$dev" $((100 * REGION)) $((4 * REGION)) "$MODEL" &&
	expect_dev_matches_file "read in region 200" \
		"$dev" $((200 * REGION + 3)) 5 "$MODEL" || return
	wait_hydrated rom 5 || { fail "the read-only device did not copy on read"; return 1; }
	expect_eq "$(cor_bitmap rom hydrated 0 "$TOTAL")" "100-103 200" "hydrated bitmap" || return
	try_write "O_DIRECT write" dd if="$DATA" of="$dev" bs=4096 count=1 seek=$((101 * BPR)) \
		oflag=direct conv=notrunc status=none || return
	# the state was committed: it survives re-creation, still read-only
	cor_remove rom || return
	cor_create --readonly rom "$ORIGIN" "$(dm_path destb)" "$META" "$REGION" ||
		{ fail "re-create --readonly with metadata: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_bitmap rom hydrated 0 "$TOTAL")" "100-103 200" \
		"hydrated bitmap after re-creation" || return
	expect_eq "$(cor_status_field rom dirty)" 0 "dirty regions after re-creation" || return
	reads_origin_not "$dev" $((100 * REGION)) $((4 * REGION)) \
		"read of regions 100-103 after re-creation" rom &&
	reads_origin_not "$dev" $((200 * REGION)) "$REGION" \
		"read of region 200 after re-creation" rom || return
	out=$("$COR_PATTERN" verify "$(dm_path destb)" $((100 * BPR)) $((4 * BPR)) "$SEED" \
		--quiet 2>&1) ||
		{ fail "destination does not hold the copied regions: $out"; return 1; }
}

# The shared-origin set: an 8 MiB golden device, vm1 (region 64) and vm2
# (region 8, 4 KiB) on top of it
LEN=16384
GOLDEN_SET=

st_shared_origin()
{
	local golden vm1 vm2 r0 d out msg gtotal=$((LEN / REGION))

	# golden is not created with cor_create: it must outlive the epilogue's
	# metadata checks of vm1 and vm2, which use it as their origin
	dm_create golden "$(cor_table --len "$LEN" "$ORIGIN" "$(dm_path destc)" - "$REGION")" \
		--readonly ||
		{ fail "create golden: $COR_LAST_OUTPUT"; return 1; }
	golden=$(dm_path golden)
	cor_create --len "$LEN" vm1 "$golden" "$(dm_path destd)" "$(dm_path metab)" "$REGION" ||
		{ fail "create vm1 on golden: $COR_LAST_OUTPUT"; return 1; }
	cor_create --len "$LEN" vm2 "$golden" "$(dm_path deste)" "$(dm_path metac)" 8 ||
		{ fail "create vm2 on golden: $COR_LAST_OUTPUT"; return 1; }
	vm1=$(dm_path vm1) vm2=$(dm_path vm2)
	GOLDEN_SET=1

	# vm1 pulls regions 0-63 (2 MiB) through golden, which copies them too
	expect_dev_matches_file "vm1: read of regions 0-63" \
		"$vm1" 0 $((64 * REGION)) "$MODEL" || return
	wait_hydrated vm1 64 || { fail "vm1 did not hydrate"; return 1; }
	wait_hydrated golden 64 || { fail "golden did not hydrate"; return 1; }
	expect_eq "$(cor_bitmap golden hydrated 0 "$gtotal")" "0-63" \
		"golden's hydrated bitmap" || return
	expect_eq "$(cor_bitmap vm1 hydrated 0 "$gtotal")" "0-63" "vm1's hydrated bitmap" || return
	out=$("$COR_PATTERN" verify "$(dm_path destc)" 0 $((64 * BPR)) "$SEED" --quiet 2>&1) ||
		{ fail "golden's destination: $out"; return 1; }

	# vm2 reads the same range: served by golden's destination, the origin
	# is not read again
	r0=$(dev_read_sectors "$ORIGIN")
	expect_dev_matches_file "vm2: read of regions 0-63" \
		"$vm2" 0 $((64 * REGION)) "$MODEL" || return
	expect_eq $(( $(dev_read_sectors "$ORIGIN") - r0 )) 0 \
		"origin sectors read by vm2 for regions golden holds" || return
	wait_hydrated vm2 $((64 * REGION / 8)) || { fail "vm2 did not hydrate"; return 1; }
	expect_eq "$(cor_status_field vm2 dirty)" 0 "vm2 dirty regions" || return

	# vm1 writes: whole regions 5-6, part of unhydrated region 70; vm1 sees
	# them, vm2 and golden do not
	cp "$MODEL" "$COR_TMP/model1" || return
	dd_write "$DATA" 0 "$vm1" $((5 * REGION)) $((2 * REGION)) &&
	dd_write "$DATA" 128 "$vm1" $((70 * REGION + 9)) 20 ||
		{ fail "writes to vm1 failed"; return 1; }
	model_write "$COR_TMP/model1" "$DATA" 0 $((5 * REGION)) $((2 * REGION))
	model_write "$COR_TMP/model1" "$DATA" 128 $((70 * REGION + 9)) 20
	wait_quiet vm1 || return
	expect_eq "$(cor_bitmap vm1 dirty 0 "$gtotal")" "5-6 70" "vm1's dirty bitmap" || return
	expect_eq "$(cor_status_field golden dirty)" 0 "golden's dirty regions" || return

	# the whole of each device, which also hydrates the rest everywhere
	expect_dev_matches_file "vm1: whole device" "$vm1" 0 "$LEN" "$COR_TMP/model1" || return
	expect_dev_matches_file "vm2: whole device" "$vm2" 0 "$LEN" "$MODEL" || return
	expect_dev_matches_file "golden: whole device" "$golden" 0 "$LEN" "$MODEL" || return
	wait_quiet golden && wait_quiet vm1 && wait_quiet vm2 || return
	expect_eq "$(cor_status_fields golden copies_failed dirty)" "0 0" \
		"golden's copies_failed, dirty" || return
	expect_eq "$(cor_status_fields vm1 copies_failed)" "0" "vm1's copies_failed" || return
	expect_eq "$(cor_status_fields vm2 copies_failed dirty)" "0 0" \
		"vm2's copies_failed, dirty" || return
	d=$(cor_status_field golden hydrated)
	msg="golden: $d/$gtotal regions hydrated,"
	msg+=" origin_read_sectors $(cor_status_field golden origin_read_sectors)"
	ktap_diag "$msg"
}

st_shared_persist()
{
	[ -n "$GOLDEN_SET" ] || { subtest_skip "no shared origin set"; return; }
	# vm1 and vm2 come back with their state, golden (volatile) keeps its
	cor_remove vm1 && cor_remove vm2 || return
	cor_create --len "$LEN" vm1 "$(dm_path golden)" "$(dm_path destd)" "$(dm_path metab)" \
		"$REGION" ||
		{ fail "re-create vm1: $COR_LAST_OUTPUT"; return 1; }
	cor_create --len "$LEN" vm2 "$(dm_path golden)" "$(dm_path deste)" "$(dm_path metac)" 8 ||
		{ fail "re-create vm2: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_bitmap vm1 dirty 0 $((LEN / REGION)))" "5-6 70" \
		"vm1's dirty bitmap after re-creation" || return
	expect_dev_matches_file "vm1 after re-creation" \
		"$(dm_path vm1)" 0 "$LEN" "$COR_TMP/model1" &&
	expect_dev_matches_file "vm2 after re-creation" "$(dm_path vm2)" 0 "$LEN" "$MODEL" || return
	expect_eq "$(cor_status_field vm1 origin_read_sectors)" 0 \
		"vm1 read golden after re-creation" &&
	expect_eq "$(cor_status_field vm2 origin_read_sectors)" 0 \
		"vm2 read golden after re-creation"
}

run_subtest "'-' metadata on a read-write table is refused" st_rw_volatile_refused
run_subtest "read-only volatile device copies on read" st_volatile_cor
run_subtest "writes, discards, write-zeroes to a read-only device fail, change nothing" \
	st_volatile_writes_fail
run_subtest "read-only table with a metadata device copies on read, state persists" \
	st_readonly_metadata
run_subtest "one read-only volatile device shared as origin by two cor devices" st_shared_origin
run_subtest "the two cor devices on the shared origin keep their state" st_shared_persist

cor_test_done
