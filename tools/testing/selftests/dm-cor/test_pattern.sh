#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_pattern.sh: copy-on-read of a stamped origin.
#
# Reads through cor return the origin byte for byte and hydrate exactly the
# regions they touch (whole regions, even for a partial read); once every
# region is hydrated a full read reads nothing from the origin, the
# destination holds the origin's data, the bitmaps say so, and all of it
# survives removing and re-creating the device.

. "$(dirname "$0")/lib.sh"

cor_test_init
ktap_plan 7

SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors: 8 blocks of 4 KiB per region
BPR=$((REGION / 8))		# blocks per region

cor_setup_devs 32M 32M 4M || cor_bail "cannot create the test devices"
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
TOTAL=$((ORIGIN_SECTORS / REGION))
COR=$(dm_path cor)
BASELINE=

st_fresh()
{
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_status_field cor total_regions)" "$TOTAL" "total_regions" || return
	expect_eq "$(cor_status_field cor region_size)" "$REGION" "region_size" || return
	expect_eq "$(cor_status_field cor mode)" "rw" "mode" || return
	expect_eq "$(cor_status_field cor dirty)" 0 "dirty regions" || return
	expect_eq "$(cor_status_field cor copies_failed)" 0 "copies_failed" || return
	# the kernel may have probed the first sectors when the disk appeared
	BASELINE=$(cor_bitmap cor hydrated 0 "$TOTAL")
	[ -z "$BASELINE" ] || [ "$BASELINE" == "0" ] ||
		{ fail "fresh device has hydrated regions '$BASELINE'"; return 1; }
	expect_eq "$(cor_status_field cor hydrated)" "$(ranges_count "$BASELINE")" \
		"hydrated regions" || return
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "" "dirty bitmap" || return
	ktap_diag "status: $(cor_status "$(dm_name cor)")"
}

st_partial_reads()
{
	local r0 r1 want

	r0=$(dev_read_sectors "$ORIGIN")
	# regions 3-5 whole (blocks 24..47), region 10 by one block (block 81)
	expect_ok "read regions 3-5" \
		"$COR_PATTERN" verify "$COR" $((3 * BPR)) $((3 * BPR)) "$SEED" || return
	expect_ok "read one block of region 10" \
		"$COR_PATTERN" verify "$COR" $((10 * BPR + 1)) 1 "$SEED" || return
	want=$(ranges_normalize "$BASELINE 3-5 10")
	wait_hydrated cor "$(ranges_count "$want")" || { fail "regions did not hydrate"; return 1; }
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "$want" "hydrated bitmap" || return
	expect_eq "$(cor_status_field cor hydrated)" "$(ranges_count "$want")" \
		"hydrated count" || return
	expect_eq "$(cor_status_field cor dirty)" 0 "dirty count" || return
	r1=$(dev_read_sectors "$ORIGIN")
	expect_cmp $((r1 - r0)) -ge $((3 * REGION + 8)) \
		"origin sectors read for the reads" || return
	# the whole of region 10 was copied, not just the block that was read
	expect_ok "destination holds regions 3-5" \
		"$COR_PATTERN" verify "$DEST" $((3 * BPR)) $((3 * BPR)) "$SEED" &&
	expect_ok "destination holds all of region 10" \
		"$COR_PATTERN" verify "$DEST" $((10 * BPR)) "$BPR" "$SEED"
}

st_full_read()
{
	local r0 r1 h0 unhydrated

	h0=$(cor_status_field cor hydrated)
	unhydrated=$((TOTAL - h0))
	r0=$(dev_read_sectors "$ORIGIN")
	expect_ok "full read through cor" "$COR_PATTERN" verify "$COR" 0 all "$SEED" || return
	r1=$(dev_read_sectors "$ORIGIN")
	# every region not yet hydrated had to come from the origin
	expect_cmp $((r1 - r0)) -ge $((unhydrated * REGION)) \
		"origin sectors read by the full read" || return
	ktap_diag "full read: $((r1 - r0)) origin sectors for $unhydrated unhydrated regions"
}

st_all_hydrated()
{
	local out

	wait_hydrated cor "$TOTAL" 60 || { fail "not all regions hydrated"; return 1; }
	expect_eq "$(cor_status_field cor hydrated)" "$TOTAL" "hydrated regions" || return
	expect_eq "$(cor_status_field cor hydrating)" 0 "hydrating regions" || return
	expect_eq "$(cor_status_field cor dirty)" 0 "dirty regions" || return
	expect_eq "$(cor_status_field cor copies_failed)" 0 "copies_failed" || return
	expect_cmp "$(cor_status_field cor copies_done)" -gt 0 "copies_done" || return
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "0-$((TOTAL - 1))" \
		"hydrated bitmap" || return
	expect_eq "$(cor_bitmap cor hydrated 100 10)" "100-109" "hydrated bitmap window" || return
	expect_eq "$(cor_bitmap cor hydrated $((TOTAL - 1)) 1)" "$((TOTAL - 1))" \
		"hydrated bitmap last region" || return
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "" "dirty bitmap" || return
	# bad windows and bitmaps are refused without changing anything
	expect_fail "bitmap window past the end" \
		cor_message cor bitmap hydrated $((TOTAL - 5)) 10 || return
	expect_fail "bitmap window starting past the end" \
		cor_message cor bitmap hydrated "$TOTAL" 1 || return
	expect_fail "unknown bitmap" cor_message cor bitmap clean 0 1 || return
	expect_fail "non-numeric window" cor_message cor bitmap hydrated x 1 || return
	out=$(cor_status_fields cor hydrated dirty mode)
	expect_eq "$out" "$TOTAL 0 rw" "state after the refused messages"
}

st_second_read()
{
	local r0 r1 c0 c1

	r0=$(dev_read_sectors "$ORIGIN")
	c0=$(cor_status_field cor origin_read_sectors)
	expect_ok "second full read through cor" \
		"$COR_PATTERN" verify "$COR" 0 all "$SEED" || return
	r1=$(dev_read_sectors "$ORIGIN")
	c1=$(cor_status_field cor origin_read_sectors)
	expect_eq $((r1 - r0)) 0 \
		"origin sectors read (sysfs) by a read of a hydrated device" || return
	expect_eq "$c1" "$c0" "origin_read_sectors counter" || return
	expect_eq "$(cor_status_field cor hydrated)" "$TOTAL" "hydrated regions"
}

st_dest_equals_origin()
{
	expect_ok "destination pattern" \
		"$COR_PATTERN" verify "$DEST" 0 "$ORIGIN_BLOCKS" "$SEED" || return
	expect_eq "$(origin_checksum "$DEST")" "${COR_ORIGIN_SUMS[$ORIGIN]}" "destination checksum"
}

st_persist()
{
	local r0 r1

	cor_remove cor || return
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "re-create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_status_fields cor hydrated dirty)" "$TOTAL 0" \
		"hydrated and dirty after re-creation" || return
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "0-$((TOTAL - 1))" \
		"hydrated bitmap after re-creation" || return
	r0=$(dev_read_sectors "$ORIGIN")
	expect_ok "full read after re-creation" "$COR_PATTERN" verify "$COR" 0 all "$SEED" || return
	r1=$(dev_read_sectors "$ORIGIN")
	expect_eq $((r1 - r0)) 0 "origin sectors read after re-creation"
}

run_subtest "fresh device: nothing hydrated or dirty" st_fresh
run_subtest "partial reads hydrate exactly the whole regions they touch" st_partial_reads
run_subtest "full read through cor matches the origin" st_full_read
run_subtest "every region hydrates, bitmaps and counters agree" st_all_hydrated
run_subtest "read of a hydrated device reads nothing from the origin" st_second_read
run_subtest "destination holds the origin's data" st_dest_equals_origin
run_subtest "hydration state survives remove and re-create" st_persist

cor_test_done
