#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_flush.sh: what a completed FLUSH or FUA write guarantees, checked by
# a power cut made with dm-flakey's drop_writes.
#
# Destination and metadata each sit behind dm-flakey.  Reads hydrate some
# regions and writes of all kinds (whole regions, partial regions that need
# a copy, clean and dirty regions) complete; then a flush (fsync of the
# device) and a FUA write (O_DIRECT|O_SYNC) complete.  More reads and writes
# follow that nothing flushes.  Both flakey devices then switch at once to
# drop_writes: whatever is written from then on is lost, as in a power cut,
# while the device keeps working.  After cor and the flakey devices are
# removed, cor is re-created directly on the destination and metadata
# slices: every write acknowledged before the flush reads back exactly,
# regions hydrated before the flush are still hydrated (and are not read
# from the origin), every other block holds either what it held at the
# flush or data written later (never data that nobody wrote: the
# destination was stamped with a pattern of its own), and the bitmaps name
# no region that was not read or written.  Done twice, the second time on
# the state the first one left (all hydrated) and with an O_DSYNC write as
# the last durable operation.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

cor_test_init
cor_require_cmd sync timeout
ktap_plan 6

SEED=$((RANDOM * 32768 + RANDOM))
DSEED=$((SEED + 7))
REGION=64			# sectors (32 KiB)
BPR=$((REGION / 8))

cor_setup_devs 16M 16M 4M || cor_bail "cannot create the test devices"
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
"$COR_PATTERN" stamp "$DEST" 0 all "$DSEED" --pattern-version 2 --quiet ||
	cor_bail "cannot stamp the destination"
N=$ORIGIN_SECTORS
TOTAL=$((N / REGION))
COR=$(dm_path cor)
OLD=$COR_TMP/old		# the device as of the flush
NEW=$COR_TMP/new		# ... with every later write applied
DATA=$COR_TMP/data
"$COR_PATTERN" gen 0 "$ORIGIN_BLOCKS" "$SEED" >"$OLD" && cp "$OLD" "$NEW" ||
	cor_bail "cannot build the model"
"$COR_PATTERN" gen 0 512 $((SEED + 1)) --pattern-version 1 >"$DATA" ||
	cor_bail "cannot build the data"
DATA_CUR=0

# Region sets: read or written before the flush (must persist), touched
# after it (may persist)
DURABLE_H=
DURABLE_D=
LATER=
BASELINE=
DBASELINE=

flakey_create dfl "$DEST" up && flakey_create mfl "$META" up ||
	cor_bail "cannot create the flakey devices"

# flush_ios DEV: flush requests the disk under a dm-linear slice completed
# (sysfs stat field 16), or "" when the kernel does not count them
flush_ios()
{
	local t disk

	t=$(dmsetup table "$(dm_name "$1")" | awk '{ print $4 }')
	disk=$(basename "$(readlink -f "/sys/dev/block/$t")")
	awk '{ print $16 }' "/sys/block/$disk/stat" 2>/dev/null
}

# write_io SECTOR COUNT [durable|later]: one O_DIRECT write of fresh data
write_io()
{
	[ $((DATA_CUR + $2)) -le 4096 ] || DATA_CUR=0
	dd_write "$DATA" "$DATA_CUR" "$COR" "$1" "$2" ||
		{ fail "write of sectors $1+$2 failed"; return 1; }
	if [ "$3" == "later" ]; then
		model_write "$NEW" "$DATA" "$DATA_CUR" "$1" "$2"
		LATER="$LATER $(regions_of "$1" "$2" "$REGION")"
	else
		model_write "$OLD" "$DATA" "$DATA_CUR" "$1" "$2"
		model_write "$NEW" "$DATA" "$DATA_CUR" "$1" "$2"
		DURABLE_D="$DURABLE_D $(regions_of "$1" "$2" "$REGION")"
	fi
	DATA_CUR=$((DATA_CUR + $2))
}

# read_io SECTOR COUNT [durable|later]: a read through cor (checked)
read_io()
{
	expect_dev_matches_file "read of sectors $1+$2" "$COR" "$1" "$2" "$OLD" || return
	if [ "$3" == "later" ]; then
		LATER="$LATER $(regions_of "$1" "$2" "$REGION")"
	else
		DURABLE_H="$DURABLE_H $(regions_of "$1" "$2" "$REGION")"
	fi
}

# power_cut: both flakey devices drop every write from now on.  Both are
# suspended before either is switched, so no I/O reaches one in its new
# mode while the other is still in the old one.
power_cut()
{
	local out

	out=$(dmsetup suspend --nolockfs "$(dm_name mfl)" 2>&1) &&
	out=$(dmsetup suspend --nolockfs "$(dm_name dfl)" 2>&1) ||
		{ fail "suspend of the flakey devices: $out"; return 1; }
	out=$(flakey_table "$META" "$(dev_sectors "$META")" drop_writes |
		dmsetup load "$(dm_name mfl)" 2>&1) &&
	out=$(flakey_table "$DEST" "$(dev_sectors "$DEST")" drop_writes |
		dmsetup load "$(dm_name dfl)" 2>&1) ||
		{ fail "load of drop_writes: $out"; return 1; }
	out=$(dmsetup resume "$(dm_name mfl)" 2>&1) &&
	out=$(dmsetup resume "$(dm_name dfl)" 2>&1) ||
		{ fail "resume of the flakey devices: $out"; return 1; }
	[[ "$(dmsetup table "$(dm_name dfl)")" == *drop_writes* ]] ||
		{ fail "the destination's flakey device is not dropping writes"; return 1; }
}

# Round 1: the first flush of a fresh device
round1_before()
{
	local f0d f0m out msg

	cor_create cor "$ORIGIN" "$(dm_path dfl)" "$(dm_path mfl)" "$REGION" ||
		{ fail "create over flakey: $COR_LAST_OUTPUT"; return 1; }
	BASELINE=$(cor_bitmap cor hydrated 0 "$TOTAL")
	DBASELINE=
	# hydrating reads: whole regions 10-14, parts of 30 and 31
	read_io $((10 * REGION)) $((5 * REGION)) && read_io $((30 * REGION + 5)) 3 &&
	read_io $((31 * REGION + 60)) 4 || return
	# writes: whole regions 50-51; part of unhydrated 60; across 70/71;
	# part of clean 12; twice into 100
	write_io $((50 * REGION)) $((2 * REGION)) && write_io $((60 * REGION + 9)) 7 &&
	write_io $((71 * REGION - 10)) 20 && write_io $((12 * REGION + 33)) 2 &&
	write_io $((100 * REGION)) 16 && write_io $((100 * REGION + 8)) 16 || return
	wait_hydrated cor \
		"$(ranges_count "$(ranges_normalize "$BASELINE $DURABLE_H $DURABLE_D")")" ||
		{ fail "regions did not hydrate"; return 1; }
	f0d=$(flush_ios dest) f0m=$(flush_ios meta)
	out=$(timeout 60 sync "$COR" 2>&1) || { fail "fsync of the cor device: $out"; return 1; }
	# a FUA write (O_DIRECT|O_SYNC), acknowledged: durable too
	dd if="$DATA" of="$COR" bs=512 skip=4000 seek=$((80 * REGION + 16)) count=24 \
		oflag=direct,sync conv=notrunc status=none ||
		{ fail "O_SYNC write failed"; return 1; }
	model_write "$OLD" "$DATA" 4000 $((80 * REGION + 16)) 24
	model_write "$NEW" "$DATA" 4000 $((80 * REGION + 16)) 24
	DURABLE_D="$DURABLE_D 80"
	if [ -n "$f0d" ] && [ -n "$f0m" ]; then
		expect_cmp "$(flush_ios dest)" -gt "$f0d" \
			"flushes that reached the destination's disk" &&
		expect_cmp "$(flush_ios meta)" -gt "$f0m" \
			"flushes that reached the metadata's disk" || return
	fi
	msg="acknowledged before the flush: hydrated $(ranges_normalize "$DURABLE_H"),"
	msg+=" written $(ranges_normalize "$DURABLE_D")"
	ktap_diag "$msg"
}

# after the flush, before the power cut: may or may not survive
round1_after()
{
	local out

	read_io $((90 * REGION)) $((2 * REGION)) later &&
	write_io $((110 * REGION)) "$REGION" later &&
	write_io $((111 * REGION + 50)) 5 later || return
	wait_quiet cor || return
	power_cut || return
	# lost: reads that hydrate, writes of every kind, a flush
	read_io $((140 * REGION)) $((6 * REGION)) later && read_io $((150 * REGION + 3)) 1 later &&
	write_io $((50 * REGION + 20)) 30 later && write_io $((60 * REGION + 40)) 8 later &&
	write_io $((120 * REGION)) $((2 * REGION)) later &&
	write_io $((130 * REGION + 1)) 1 later &&
	write_io $((13 * REGION)) 4 later || return
	wait_quiet cor || return
	# a flush now "succeeds" but commits nothing durable
	out=$(timeout 60 sync "$COR" 2>&1) || { fail "fsync after the power cut: $out"; return 1; }
}

# remove everything above the slices, re-create cor on them, check
restart_and_check()
{
	local h d allowed out r0 stray

	cor_remove cor && dm_remove dfl && dm_remove mfl ||
		{ fail "teardown: $COR_LAST_OUTPUT"; return 1; }
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "re-create on the slices: $COR_LAST_OUTPUT"; return 1; }
	h=$(cor_bitmap cor hydrated 0 "$TOTAL")
	d=$(cor_bitmap cor dirty 0 "$TOTAL")
	ktap_diag "after the power cut: hydrated $h; dirty $d"
	expect_eq "$(cor_status_field cor mode)" rw "mode" || return
	# durable state is there
	expect_eq "$(ranges_normalize "$h $DURABLE_H $DURABLE_D")" "$(ranges_normalize "$h")" \
		"hydrated bitmap holds every region hydrated or written before the flush" || return
	expect_eq "$(ranges_normalize "$d $DURABLE_D")" "$(ranges_normalize "$d")" \
		"dirty bitmap holds every region written before the flush" || return
	# and nothing else than what was touched
	allowed=$(ranges_normalize "$BASELINE $DURABLE_H $DURABLE_D $LATER")
	stray=$(ranges_normalize "$allowed $h")
	expect_eq "$stray" "$allowed" "hydrated bitmap names only regions read or written" || return
	stray=$(ranges_normalize "$DBASELINE $DURABLE_D $LATER $d")
	expect_eq "$stray" "$(ranges_normalize "$DBASELINE $DURABLE_D $LATER")" \
		"dirty bitmap names only regions written" || return
	# regions hydrated before the flush do not go to the origin
	r0=$(dev_read_sectors "$ORIGIN")
	dd_read "$COR" $((10 * REGION)) $((5 * REGION)) "$COR_TMP/r" ||
		{ fail "read of regions 10-14 failed"; return 1; }
	expect_eq $(( $(dev_read_sectors "$ORIGIN") - r0 )) 0 \
		"origin sectors read for regions hydrated before the flush" || return
	# every block: as of the flush, or later data; never anything else
	dd_read "$COR" 0 "$N" "$COR_TMP/dev" ||
		{ fail "read of the whole device failed"; return 1; }
	expect_blocks_either "blocks after the power cut" "$COR_TMP/dev" "$OLD" "$NEW" || return
	# the writes before the flush, exactly (those not overwritten later)
	expect_dev_matches_file "region 51" "$COR" $((51 * REGION)) "$REGION" "$OLD" &&
	expect_dev_matches_file "region 60's write" "$COR" $((60 * REGION + 9)) 7 "$OLD" &&
	expect_dev_matches_file "regions 70-71" "$COR" $((70 * REGION)) $((2 * REGION)) "$OLD" &&
	expect_dev_matches_file "region 12" "$COR" $((12 * REGION)) "$REGION" "$OLD" &&
	expect_dev_matches_file "region 100" "$COR" $((100 * REGION)) "$REGION" "$OLD" &&
	expect_dev_matches_file "region 80 (FUA write)" \
		"$COR" $((80 * REGION)) "$REGION" "$OLD" || return
	# from now on, the device as it is
	cp "$COR_TMP/dev" "$OLD" && cp "$COR_TMP/dev" "$NEW" || return
}

# Round 2, on the state round 1 left (every region hydrated by its full
# read, most of them clean): writes dirty clean regions, fsync, more writes,
# then an O_DSYNC write (FUA, and a flush) right before the cut
round2()
{
	local out

	wait_hydrated cor "$TOTAL" 60 ||
		{ fail "round 1's full read did not hydrate everything"; return 1; }
	cor_remove cor || return
	flakey_create dfl "$DEST" up && flakey_create mfl "$META" up || return
	cor_create cor "$ORIGIN" "$(dm_path dfl)" "$(dm_path mfl)" "$REGION" ||
		{ fail "create over flakey (round 2): $COR_LAST_OUTPUT"; return 1; }
	DURABLE_H='' DURABLE_D='' LATER=''
	BASELINE=$(cor_bitmap cor hydrated 0 "$TOTAL")
	DBASELINE=$(cor_bitmap cor dirty 0 "$TOTAL")
	write_io $((220 * REGION)) "$REGION" && write_io $((230 * REGION + 3)) 3 &&
	write_io $((14 * REGION + 1)) 1 || return
	out=$(timeout 60 sync "$COR" 2>&1) || { fail "fsync of the cor device: $out"; return 1; }
	write_io $((240 * REGION + 8)) 8 later &&
	write_io $((250 * REGION)) "$REGION" later || return
	# O_DSYNC: its own data and every write completed before it are durable
	dd if="$DATA" of="$COR" bs=512 skip=3000 seek=$((260 * REGION + 2)) count=6 \
		oflag=direct,dsync conv=notrunc status=none ||
		{ fail "O_DSYNC write failed"; return 1; }
	model_write "$OLD" "$DATA" 3000 $((260 * REGION + 2)) 6
	model_write "$NEW" "$DATA" 3000 $((260 * REGION + 2)) 6
	# the two writes before it are durable now: into the old model too
	model_write "$OLD" "$DATA" $((DATA_CUR - REGION - 8)) $((240 * REGION + 8)) 8
	model_write "$OLD" "$DATA" $((DATA_CUR - REGION)) $((250 * REGION)) "$REGION"
	DURABLE_D="$DURABLE_D 240 250 260"
	power_cut || return
	write_io $((220 * REGION + 5)) 5 later && write_io $((270 * REGION)) 9 later &&
	write_io $((12 * REGION)) $((2 * REGION)) later || return
	wait_quiet cor
}

st_round1_before() { round1_before; }
st_round1_after() { round1_after; }
st_round1_check() { restart_and_check; }
st_round2() { round2; }
st_round2_check() { restart_and_check; }

st_whole()
{
	local out

	expect_dev_matches_file "whole device" "$COR" 0 "$N" "$OLD" || return
	out=$("$COR_PATTERN" verify "$COR" $((300 * BPR)) $((10 * BPR)) "$SEED" --quiet 2>&1) ||
		{ fail "untouched regions 300-309 are not the origin's: $out"; return 1; }
}

run_subtest "reads, writes, then a flush and a FUA write complete over flakey devices" \
	st_round1_before
run_subtest "more I/O, power cut (drop_writes on both), lost I/O" st_round1_after
run_subtest "after the cut: flushed writes and hydrated regions kept, no stray data" st_round1_check
run_subtest "second round on that state: writes, fsync, O_DSYNC write, cut" st_round2
run_subtest "after the second cut: the O_DSYNC write and what preceded it kept" st_round2_check
run_subtest "the device reads as the model, untouched regions as the origin" st_whole

cor_test_done
