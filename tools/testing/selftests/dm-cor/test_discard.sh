#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_discard.sh: discards and write-zeroes through dm-cor.
#
# The destination is stamped with a pattern of its own first, so that what
# a discard did or did not pass down shows in the data, and the
# destination's sysfs discard counters (stat fields 12 and 14) count what
# reached it.  Whole-region discards mark regions hydrated and dirty without
# reading the origin and pass down (not with no_discard_passdown, where the
# destination keeps its old data); a partial discard of an unhydrated region
# changes nothing; one of a hydrated region passes down exactly its part.
# Write-zeroes (BLKZEROOUT, fallocate -z) behaves like a write.  A model of
# the device (origin, writes, zeroes; for discarded ranges whatever the
# destination holds) is checked at the end, and again after re-creation.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

cor_test_init
cor_require_cmd blkdiscard fallocate
ktap_plan 10

SEED=$((RANDOM * 32768 + RANDOM))
DSEED=$((SEED + 7))		# the destination's own pattern
REGION=64			# sectors (32 KiB)
BPR=$((REGION / 8))		# 4 KiB blocks per region

cor_setup_devs 16M 16M 4M || cor_bail "cannot create the test devices"
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
[ "$(cat "/sys/dev/block/$(dev_majmin "$DEST")/queue/discard_max_bytes")" -gt 0 ] ||
	ktap_skip_all "the destination ($(cor_disk 1)) does not support discards"
"$COR_PATTERN" stamp "$DEST" 0 all "$DSEED" --pattern-version 2 --quiet ||
	cor_bail "cannot stamp the destination"
TOTAL=$((ORIGIN_SECTORS / REGION))
COR=$(dm_path cor)
MODEL=$COR_TMP/model
DATA=$COR_TMP/data
"$COR_PATTERN" gen 0 "$ORIGIN_BLOCKS" "$SEED" >"$MODEL" || cor_bail "cannot build the model"
ORIGIN_MODEL=$COR_TMP/origin
cp "$MODEL" "$ORIGIN_MODEL" || cor_bail "cannot copy the model"
"$COR_PATTERN" gen 0 64 $((SEED + 1)) --pattern-version 1 >"$DATA" ||
	cor_bail "cannot build the data"
DATA_CUR=0
BASELINE=

cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" || cor_bail "cannot create cor: $COR_LAST_OUTPUT"
BASELINE=$(cor_bitmap cor hydrated 0 "$TOTAL")
[ -z "$BASELINE" ] || [ "$BASELINE" == "0" ] ||
	cor_bail "fresh device has hydrated regions '$BASELINE'"

# write_io SECTOR COUNT: one O_DIRECT write of fresh data, also to the model
write_io()
{
	[ $((DATA_CUR + $2)) -le 512 ] || DATA_CUR=0
	dd_write "$DATA" "$DATA_CUR" "$COR" "$1" "$2" ||
		{ fail "write of sectors $1+$2 failed"; return 1; }
	model_write "$MODEL" "$DATA" "$DATA_CUR" "$1" "$2"
	DATA_CUR=$((DATA_CUR + $2))
}

# hydrate FIRST_REGION NR: read regions through cor (checked against the
# model) and wait until their copies are done
hydrate()
{
	local h

	expect_dev_matches_file "read of regions $1+$2" \
		"$COR" $(($1 * REGION)) $(($2 * REGION)) "$MODEL" || return
	wait_quiet cor || { fail "copies of regions $1+$2 did not complete"; return 1; }
	h=$(cor_bitmap cor hydrated "$1" "$2")
	[ "$h" == "$(regions_of $(($1 * REGION)) $(($2 * REGION)) "$REGION")" ] ||
		{ fail "regions $1+$2 did not hydrate: '$h'"; return 1; }
}

# discarded SECTOR NR: a discarded range reads from the destination, the
# origin untouched; the model takes the destination's data there
discarded()
{
	local r0 r1

	r0=$(dev_read_sectors "$ORIGIN")
	expect_devs_equal "discarded sectors $1+$2 read through cor" \
		"$COR" "$DEST" "$1" "$2" || return
	r1=$(dev_read_sectors "$ORIGIN")
	expect_eq $((r1 - r0)) 0 \
		"origin sectors read when reading discarded sectors $1+$2" || return
	model_copy "$MODEL" "$1" "$2" "$DEST"
}

# dest_untouched FIRST_REGION NR: the destination still holds its own
# pattern there (nothing copied, written or discarded)
dest_untouched()
{
	local out

	out=$("$COR_PATTERN" verify "$DEST" $(($1 * BPR)) $(($2 * BPR)) "$DSEED" \
		--pattern-version 2 --quiet 2>&1) ||
		{ fail "destination regions $1+$2 changed: $out"; return 1; }
}

# snap: remember the counters that discards must or must not move
snap()
{
	S_ORIG=$(dev_read_sectors "$ORIGIN")
	S_ORS=$(cor_status_field cor origin_read_sectors)
	S_DIOS=$(dev_discard_ios "$DEST")
	S_DSEC=$(dev_discard_sectors "$DEST")
}

# expect_passed_down WHAT NR_SECTORS: exactly that many sectors of discard
# reached the destination since snap, and the origin was not read
expect_passed_down()
{
	local dsec dios

	dsec=$(( $(dev_discard_sectors "$DEST") - S_DSEC ))
	dios=$(( $(dev_discard_ios "$DEST") - S_DIOS ))
	expect_eq "$dsec" "$2" "$1: discard sectors that reached the destination" || return
	if [ "$2" -gt 0 ]; then
		expect_cmp "$dios" -ge 1 \
			"$1: discard requests that reached the destination" || return
	else
		expect_eq "$dios" 0 "$1: discard requests that reached the destination" || return
	fi
	expect_eq $(( $(dev_read_sectors "$ORIGIN") - S_ORIG )) 0 \
		"$1: origin sectors read (sysfs)" || return
	expect_eq "$(cor_status_field cor origin_read_sectors)" "$S_ORS" \
		"$1: origin_read_sectors" || return
}

st_whole()
{
	expect_eq "$(cor_status_field cor features)" "" "features (discard passdown on)" || return
	snap
	discard "$COR" $((10 * REGION)) $((4 * REGION)) || return
	expect_passed_down "discard of regions 10-13" $((4 * REGION)) || return
	expect_eq "$(cor_bitmap cor hydrated 9 6)" "10-13" \
		"hydrated bitmap of regions 9-14" || return
	expect_eq "$(cor_bitmap cor dirty 9 6)" "10-13" "dirty bitmap of regions 9-14" || return
	expect_eq "$(cor_status_fields cor hydrated dirty hydrating)" "4 4 0" \
		"hydrated, dirty, hydrating" || return
	discarded $((10 * REGION)) $((4 * REGION)) || return
	dest_untouched 9 1 && dest_untouched 14 1 || return
	# a hydrated (clean) region discarded whole becomes dirty
	hydrate 16 1 || return
	snap
	discard "$COR" $((16 * REGION)) "$REGION" || return
	expect_passed_down "discard of clean region 16" "$REGION" || return
	expect_eq "$(cor_bitmap cor dirty 15 3)" "16" "dirty bitmap of regions 15-17" || return
	discarded $((16 * REGION)) "$REGION" || return
	# the neighbours still read as the origin
	hydrate 9 1 && hydrate 14 2 && hydrate 17 1
}

st_partial_unhydrated()
{
	local h0 d0

	h0=$(cor_bitmap cor hydrated 0 "$TOTAL")
	d0=$(cor_bitmap cor dirty 0 "$TOTAL")
	snap
	# inside region 30; across the boundary of 31 and 32
	discard "$COR" $((30 * REGION + 8)) 16 || return
	discard "$COR" $((31 * REGION + 32)) "$REGION" || return
	expect_passed_down "partial discards of unhydrated regions 30-32" 0 || return
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "$h0" "hydrated bitmap" || return
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "$d0" "dirty bitmap" || return
	dest_untouched 30 3 || return
	# still the origin's data, hydrated clean by reading it
	hydrate 30 3 || return
	expect_eq "$(cor_bitmap cor dirty 30 3)" "" "dirty bitmap of regions 30-32"
}

st_partial_hydrated()
{
	local r=$((40 * REGION))

	hydrate 40 2 || return
	snap
	# the middle of region 40; the end of 41 (hydrated) and the start of
	# 42 (not): only the parts on hydrated regions pass down
	discard "$COR" $((r + 16)) 16 || return
	discard "$COR" $((r + 2 * REGION - 16)) 32 || return
	expect_passed_down "partial discards of hydrated regions 40-41" 32 || return
	expect_eq "$(cor_bitmap cor hydrated 39 5)" "40-41" \
		"hydrated bitmap of regions 39-43" || return
	discarded $((r + 16)) 16 || return
	discarded $((r + 2 * REGION - 16)) 16 || return
	# the rest of the regions is intact, through cor and on the destination
	expect_dev_matches_file "region 40 outside the discard" "$COR" "$r" 16 "$MODEL" &&
	expect_dev_matches_file "region 40 outside the discard" \
		"$COR" $((r + 32)) $((REGION + REGION - 48)) "$MODEL" &&
	expect_dev_matches_file "destination region 40-41 outside the discards" \
		"$DEST" $((r + 32)) $((REGION + REGION - 48)) "$MODEL" || return
	# region 42 got nothing: the destination still holds its own data
	dest_untouched 42 1 || return
	hydrate 42 1
}

st_partial_hydrated_dirty()
{
	local what

	# a partial discard passed down to a clean region changed the
	# destination: the region is no longer an exact copy of the origin
	what="dirty bitmap of clean regions 40-41"
	what+=" after a partial discard was passed down to them"
	expect_eq "$(cor_bitmap cor dirty 40 2)" "40-41" "$what"
}

st_no_passdown()
{
	local out

	cor_remove cor || return
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" no_discard_passdown ||
		{ fail "create with no_discard_passdown: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_status_field cor features)" "no_discard_passdown" "features" || return
	hydrate 43 2 || return
	snap
	# whole unhydrated regions 50-53, part of clean 43, all of clean 44
	discard "$COR" $((50 * REGION)) $((4 * REGION)) || return
	discard "$COR" $((43 * REGION + 8)) 8 || return
	discard "$COR" $((44 * REGION)) "$REGION" || return
	expect_passed_down "discards without passdown" 0 || return
	expect_eq "$(cor_bitmap cor hydrated 49 6)" "50-53" \
		"hydrated bitmap of regions 49-54" || return
	expect_eq "$(cor_bitmap cor dirty 49 6)" "50-53" "dirty bitmap of regions 49-54" || return
	expect_eq "$(cor_bitmap cor dirty 43 2)" "44" "dirty bitmap of regions 43-44" || return
	# the destination kept its old data: its own pattern in 50-53, the
	# origin's in 43-44, and that is what the device now shows
	dest_untouched 50 4 || return
	discarded $((50 * REGION)) $((4 * REGION)) || return
	out=$("$COR_PATTERN" verify "$COR" $((50 * BPR)) $((4 * BPR)) "$DSEED" \
		--pattern-version 2 --quiet 2>&1) ||
		{ fail "regions 50-53 do not show the destination's old data: $out"; return 1; }
	expect_dev_matches_file "regions 43-44 after discards without passdown" \
		"$COR" $((43 * REGION)) $((2 * REGION)) "$MODEL" || return
	expect_dev_matches_file "destination regions 43-44" \
		"$DEST" $((43 * REGION)) $((2 * REGION)) "$MODEL" || return
	cor_remove cor || return
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "re-create with passdown: $COR_LAST_OUTPUT"; return 1; }
}

st_write_zeroes()
{
	local r0 d out

	# whole regions 60-61: no origin read, zeroes, dirty
	r0=$(dev_read_sectors "$ORIGIN")
	zeroout "$COR" $((60 * REGION)) $((2 * REGION)) || return
	expect_eq $(( $(dev_read_sectors "$ORIGIN") - r0 )) 0 \
		"origin sectors read for zeroing regions 60-61" || return
	model_zero "$MODEL" $((60 * REGION)) $((2 * REGION))
	# part of region 70: the rest of the region is copied first
	r0=$(dev_read_sectors "$ORIGIN")
	zeroout "$COR" $((70 * REGION + 8)) 16 || return
	d=$(( $(dev_read_sectors "$ORIGIN") - r0 ))
	expect_cmp "$d" -ge $((REGION - 16)) \
		"origin sectors read for zeroing part of region 70" || return
	expect_cmp "$d" -le "$REGION" "origin sectors read for zeroing part of region 70" || return
	model_zero "$MODEL" $((70 * REGION + 8)) 16
	# second half of 80, all of 81, first half of 82
	zeroout "$COR" $((80 * REGION + REGION / 2)) $((2 * REGION)) || return
	model_zero "$MODEL" $((80 * REGION + REGION / 2)) $((2 * REGION))
	# fallocate's zero range, in a clean region (90) and an unhydrated one (91)
	hydrate 90 1 || return
	out=$(fallocate -z -o $(((90 * REGION + 40) * 512)) -l $((40 * 512)) "$COR" 2>&1) ||
		{ fail "fallocate -z: $out"; return 1; }
	model_zero "$MODEL" $((90 * REGION + 40)) 40
	# zeroes over data written before (dirty region 92)
	write_io $((92 * REGION)) "$REGION" || return
	zeroout "$COR" $((92 * REGION + 1)) 1 || return
	model_zero "$MODEL" $((92 * REGION + 1)) 1
	wait_quiet cor || return
	expect_eq "$(cor_bitmap cor dirty 59 35)" "60-61 70 80-82 90-92" \
		"dirty bitmap of regions 59-93" || return
	expect_eq "$(cor_bitmap cor hydrated 59 35)" "60-61 70 80-82 90-92" \
		"hydrated bitmap of regions 59-93" || return
	expect_dev_matches_file "regions 59-93 after write-zeroes" \
		"$COR" $((59 * REGION)) $((35 * REGION)) "$MODEL" &&
	expect_dev_matches_file "destination regions 60-61 70 80-82 90-92" \
		"$DEST" $((60 * REGION)) $((2 * REGION)) "$MODEL" &&
	expect_dev_matches_file "destination region 70" \
		"$DEST" $((70 * REGION)) "$REGION" "$MODEL" &&
	expect_dev_matches_file "destination regions 80-82" \
		"$DEST" $((80 * REGION)) $((3 * REGION)) "$MODEL" &&
	expect_dev_matches_file "destination regions 90-92" \
		"$DEST" $((90 * REGION)) $((3 * REGION)) "$MODEL"
}

st_spanning()
{
	local s e

	# clean 100 and 120, dirty 140 (partly written), 200/220 untouched
	hydrate 100 1 && hydrate 120 1 || return
	write_io $((140 * REGION + 10)) 30 || return
	wait_quiet cor || return
	snap
	# from inside 100 to inside 140: 101-139 whole, the ends hydrated
	s=$((100 * REGION + 5)) e=$((140 * REGION + 17))
	discard "$COR" "$s" $((e - s)) || return
	expect_passed_down "discard of sectors $s-$((e - 1))" $((e - s)) || return
	expect_eq "$(cor_bitmap cor hydrated 99 43)" "100-140" \
		"hydrated bitmap of regions 99-141" || return
	expect_eq "$(cor_bitmap cor dirty 101 39)" "101-139" \
		"dirty bitmap of regions 101-139" || return
	expect_eq "$(cor_bitmap cor dirty 140 1)" "140" "dirty bitmap of region 140" || return
	discarded "$s" $((e - s)) || return
	expect_dev_matches_file "region 100 before the discard" \
		"$COR" $((100 * REGION)) 5 "$MODEL" || return
	expect_dev_matches_file "region 140 after the discard" \
		"$COR" "$e" $((141 * REGION - e)) "$MODEL" || return

	# both ends in unhydrated regions: only 201-219 are marked and passed
	snap
	s=$((200 * REGION + 1)) e=$((220 * REGION + 1))
	discard "$COR" "$s" $((e - s)) || return
	expect_passed_down "discard of sectors $s-$((e - 1))" $((19 * REGION)) || return
	expect_eq "$(cor_bitmap cor hydrated 199 23)" "201-219" \
		"hydrated bitmap of regions 199-221" || return
	expect_eq "$(cor_bitmap cor dirty 199 23)" "201-219" \
		"dirty bitmap of regions 199-221" || return
	dest_untouched 200 1 && dest_untouched 220 1 || return
	discarded $((201 * REGION)) $((19 * REGION)) || return

	# from inside unhydrated 400 to the end of the device
	snap
	s=$((400 * REGION + 3))
	discard "$COR" "$s" $((ORIGIN_SECTORS - s)) || return
	expect_passed_down "discard of sector $s to the end" \
		$((ORIGIN_SECTORS - 401 * REGION)) || return
	expect_eq "$(cor_bitmap cor dirty 399 $((TOTAL - 399)))" "401-$((TOTAL - 1))" \
		"dirty bitmap of regions 399-$((TOTAL - 1))" || return
	expect_eq "$(cor_bitmap cor hydrated 400 1)" "" "hydrated bitmap of region 400" || return
	dest_untouched 400 1 || return
	discarded $((401 * REGION)) $((ORIGIN_SECTORS - 401 * REGION)) || return
	hydrate 400 1 && hydrate 200 1 && hydrate 220 1
}

st_short_last_region()
{
	local len=$((ORIGIN_SECTORS - 24)) dsec dev s out

	slice_create meta2 2 1M && slice_create dest2 1 16M || return
	zero_dev "$(dm_path meta2)" || { fail "cannot zero meta2"; return 1; }
	cor_create --len "$len" cor2 "$ORIGIN" "$(dm_path dest2)" "$(dm_path meta2)" "$REGION" ||
		{ fail "create with a short last region: $COR_LAST_OUTPUT"; return 1; }
	dev=$(dm_path cor2)
	dsec=$(dev_discard_sectors "$(dm_path dest2)")
	# the end of region 510 (unhydrated: dropped) and all of short 511
	s=$((511 * REGION - 8))
	discard "$dev" "$s" $((len - s)) || return
	expect_eq "$(cor_bitmap cor2 hydrated 0 "$TOTAL")" "511" "hydrated bitmap" || return
	expect_eq "$(cor_bitmap cor2 dirty 0 "$TOTAL")" "511" "dirty bitmap" || return
	expect_eq $(( $(dev_discard_sectors "$(dm_path dest2)") - dsec )) $((len - 511 * REGION)) \
		"discard sectors that reached the destination" || return
	expect_devs_equal "short last region" \
		"$dev" "$(dm_path dest2)" $((511 * REGION)) $((len - 511 * REGION)) || return
	out=$("$COR_PATTERN" verify "$dev" $((510 * BPR)) "$BPR" "$SEED" --quiet 2>&1) ||
		{ fail "region 510 is not the origin's: $out"; return 1; }
	cor_remove cor2
}

st_dest_without_discard()
{
	local nd before msg out key

	slice_create dest4 3 16M && slice_create meta4 2 1M || return
	zero_dev "$(dm_path meta4)" || { fail "cannot zero meta4"; return 1; }
	# dm-crypt without allow_discards: no discard support
	modprobe dm-crypt >/dev/null 2>&1
	key=000102030405060708090a0b0c0d0e0f
	if ! dm_create nodisc "0 $ORIGIN_SECTORS crypt aes-ecb $key 0 $(dm_path dest4) 0" &&
	   ! dm_create nodisc "0 $ORIGIN_SECTORS crypt cipher_null-ecb - 0 $(dm_path dest4) 0"; then
		msg="cannot create a destination without discard support (dm-crypt)"
		subtest_skip "$msg: $COR_LAST_OUTPUT"
		return
	fi
	nd=$(dm_path nodisc)
	[ "$(cat "/sys/dev/block/$(dev_majmin "$nd")/queue/discard_max_bytes")" == 0 ] ||
		{ subtest_skip "dm-crypt passes discards here"; return; }
	before=$(klog_count)
	cor_create cor3 "$ORIGIN" "$nd" "$(dm_path meta4)" "$REGION" ||
		{ fail "create on a destination without discards: $COR_LAST_OUTPUT"; return 1; }
	msg=$(klog_new_since "$before" | grep -i 'cor: .*discard')
	if [ -z "$msg" ]; then
		fail "no kernel log line about the destination's missing discard support"
		return 1
	fi
	expect_eq "$(cor_status_field cor3 features)" "no_discard_passdown" "features" || return
	expect_eq "$(dmsetup table "$(dm_name cor3)" | cut -d' ' -f7-)" "$REGION" \
		"table line (as given)" || return
	out=$(cat "/sys/dev/block/$(dev_majmin "$(dm_path cor3)")/queue/discard_max_bytes")
	expect_cmp "$out" -gt 0 "the cor device's discard_max_bytes" || return
	# discards still mark whole regions, and reach nothing below
	expect_dev_matches_file "read of region 7" \
		"$(dm_path cor3)" $((7 * REGION)) "$REGION" "$ORIGIN_MODEL" || return
	wait_quiet cor3 || return
	discard "$(dm_path cor3)" $((5 * REGION)) $((2 * REGION)) || return
	discard "$(dm_path cor3)" $((7 * REGION + 8)) 8 || return
	expect_eq "$(cor_bitmap cor3 hydrated 0 "$TOTAL")" "5-7" "hydrated bitmap" || return
	expect_eq "$(cor_bitmap cor3 dirty 0 "$TOTAL")" "5-6" "dirty bitmap" || return
	expect_eq "$(dev_discard_ios "$nd") $(dev_discard_ios "$(dm_path dest4)")" "0 0" \
		"discard requests below the cor device" || return
	expect_dev_matches_file "region 7 after a partial discard" \
		"$(dm_path cor3)" $((7 * REGION)) "$REGION" "$ORIGIN_MODEL" || return
	cor_remove cor3
}

st_model()
{
	local st0

	wait_quiet cor || return
	expect_dev_matches_file "whole device" "$COR" 0 "$ORIGIN_SECTORS" "$MODEL" || return
	st0=$(cor_status_fields cor hydrated dirty)
	cor_remove cor || return
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "re-create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_status_fields cor hydrated dirty)" "$st0" \
		"hydrated and dirty after re-creation" || return
	expect_dev_matches_file "whole device after re-creation" "$COR" 0 "$ORIGIN_SECTORS" "$MODEL"
}

run_subtest "whole-region discards: marked, origin not read, passed down" st_whole
run_subtest "partial discards of unhydrated regions change nothing" st_partial_unhydrated
run_subtest "partial discards of hydrated regions pass down only their part" st_partial_hydrated
run_subtest "a partial discard passed down to a clean region makes it dirty" \
	st_partial_hydrated_dirty
run_subtest "no_discard_passdown: regions marked, nothing reaches the destination" st_no_passdown
run_subtest "write-zeroes behaves like a write" st_write_zeroes
run_subtest "discards over many regions with unaligned ends" st_spanning
run_subtest "a discard to the end covers a short last region" st_short_last_region
run_subtest "a destination without discards: passdown off, regions still marked" \
	st_dest_without_discard
run_subtest "device matches the model, also after re-creation" st_model

cor_test_done
