#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_partial_io.sh: unaligned and partial I/O straddling regions.
#
# Every read and write is a single O_DIRECT I/O at odd 512-byte offsets,
# checked against a model file on tmpfs (the origin image overlaid with the
# writes).  Reads hydrate exactly the regions they touch; a partial write to
# an unhydrated region copies the rest of the region from the origin, a
# whole-region write reads nothing from the origin, and a write to a
# hydrated region neither; the status counts and bitmaps follow; the data
# survives suspend/resume and re-creation.

. "$(dirname "$0")/lib.sh"

cor_test_init
ktap_plan 6

SEED=$((RANDOM * 32768 + RANDOM))
REGION=32			# sectors (16 KiB)

cor_setup_devs 16M 16M 4M || cor_bail "cannot create the test devices"
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
TOTAL=$((ORIGIN_SECTORS / REGION))
COR=$(dm_path cor)
MODEL=$COR_TMP/model
DATA=$COR_TMP/data
"$COR_PATTERN" gen 0 "$ORIGIN_BLOCKS" "$SEED" >"$MODEL" || cor_bail "cannot build the model"
"$COR_PATTERN" gen 0 512 $((SEED + 1)) --pattern-version 1 >"$DATA" ||
	cor_bail "cannot build the data"
DATA_CUR=0			# next unused sector of $DATA
READ_SET=
WRITE_SET=
BASELINE=

cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" || cor_bail "cannot create cor: $COR_LAST_OUTPUT"
BASELINE=$(cor_bitmap cor hydrated 0 "$TOTAL")

# write_io SECTOR COUNT: one O_DIRECT write of fresh data, also to the model
write_io()
{
	dd_write "$DATA" "$DATA_CUR" "$COR" "$1" "$2" ||
		{ fail "write of sectors $1+$2 failed"; return 1; }
	model_write "$MODEL" "$DATA" "$DATA_CUR" "$1" "$2"
	DATA_CUR=$((DATA_CUR + $2))
	WRITE_SET="$WRITE_SET $(regions_of "$1" "$2" "$REGION")"
}

# region_span SECTOR COUNT: "first_sector nr_sectors" of the whole regions
region_span()
{
	local a=$(($1 / REGION)) b=$((($1 + $2 - 1) / REGION))

	echo "$((a * REGION)) $(((b - a + 1) * REGION))"
}

# check_regions DEV SECTOR COUNT WHAT: the whole regions around an I/O
check_regions()
{
	local span

	span=$(region_span "$2" "$3")
	set -- "$1" $span "$4"
	expect_dev_matches_file "$4" "$1" "$2" "$3" "$MODEL"
}

st_unaligned_reads()
{
	local io s n want

	for io in "31 2" "95 66" "1001 1" "2047 3" "4099 100" "8191 129" "20000 7"; do
		read -r s n <<<"$io"
		expect_dev_matches_file "read of sectors $s+$n" "$COR" "$s" "$n" "$MODEL" || return
		READ_SET="$READ_SET $(regions_of "$s" "$n" "$REGION")"
	done
	want=$(ranges_normalize "$BASELINE $READ_SET")
	wait_hydrated cor "$(ranges_count "$want")" || { fail "regions did not hydrate"; return 1; }
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "$want" \
		"hydrated bitmap after the reads" || return
	expect_eq "$(cor_status_field cor dirty)" 0 "dirty regions after the reads" || return
	# the copies are of whole regions
	for io in "31 2" "95 66" "1001 1" "2047 3" "4099 100" "8191 129" "20000 7"; do
		read -r s n <<<"$io"
		check_regions "$DEST" "$s" "$n" "destination regions of the read $s+$n" || return
	done
}

st_partial_writes_unhydrated()
{
	local r0 r1 r2 d io s n want min=0 max=0 a b span

	r0=$(dev_read_sectors "$ORIGIN")
	# region 200 inside; 300/301 straddled; 400 (1 sector), 401 whole, 402 (1 sector)
	for io in "6405 3" "9630 5" "12831 34"; do
		read -r s n <<<"$io"
		write_io "$s" "$n" || return
	done
	r1=$(dev_read_sectors "$ORIGIN")
	# bounds: the unwritten part of each partially written region, at most
	# the whole of those regions; nothing for region 401
	min=$(((32 - 3) + (32 - 2) + (32 - 3) + (32 - 1) + (32 - 1)))
	max=$((5 * REGION))
	d=$((r1 - r0))
	ktap_diag "partial writes read $d origin sectors (bounds $min..$max)"
	expect_cmp "$d" -ge "$min" "origin sectors read for partial writes" || return
	expect_cmp "$d" -le "$max" "origin sectors read for partial writes" || return
	want=$(ranges_normalize "$WRITE_SET")
	expect_eq "$want" "200 300-301 400-402" "(test) regions written" || return
	wait_status cor dirty -ge 6 || { fail "dirty count did not reach 6"; return 1; }
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "$want" "dirty bitmap" || return
	expect_eq "$(cor_status_field cor dirty)" 6 "dirty regions" || return
	# the rest of each region is the origin's, the written part the data
	for io in "6405 3" "9630 5" "12831 34"; do
		read -r s n <<<"$io"
		check_regions "$COR" "$s" "$n" "regions of the write $s+$n" || return
		check_regions "$DEST" "$s" "$n" "destination regions of the write $s+$n" || return
	done
	r2=$(dev_read_sectors "$ORIGIN")
	expect_eq $((r2 - r1)) 0 "origin sectors read when reading back dirty regions"
}

st_whole_region_writes()
{
	local r0 r1 d

	# regions 500-503 exactly, in one 64 KiB write
	r0=$(dev_read_sectors "$ORIGIN")
	write_io $((500 * REGION)) $((4 * REGION)) || return
	r1=$(dev_read_sectors "$ORIGIN")
	expect_eq $((r1 - r0)) 0 "origin sectors read for a whole-region write" || return
	wait_status cor dirty -ge 10 || { fail "dirty count did not reach 10"; return 1; }
	expect_eq "$(cor_bitmap cor dirty 500 4)" "500-503" \
		"dirty bitmap of regions 500-503" || return

	# region 600 whole + first half of 601: only 601 may need the origin
	r0=$(dev_read_sectors "$ORIGIN")
	write_io $((600 * REGION)) $((REGION + REGION / 2)) || return
	r1=$(dev_read_sectors "$ORIGIN")
	d=$((r1 - r0))
	expect_cmp "$d" -ge $((REGION / 2)) "origin sectors read for region 601" || return
	expect_cmp "$d" -le "$REGION" "origin sectors read for regions 600-601" || return

	# second half of 699, all of 700, first half of 701
	r0=$(dev_read_sectors "$ORIGIN")
	write_io $((699 * REGION + REGION / 2)) $((2 * REGION)) || return
	r1=$(dev_read_sectors "$ORIGIN")
	d=$((r1 - r0))
	expect_cmp "$d" -ge "$REGION" "origin sectors read for regions 699 and 701" || return
	expect_cmp "$d" -le $((2 * REGION)) "origin sectors read for regions 699-701" || return

	wait_status cor dirty -ge 15 || { fail "dirty count did not reach 15"; return 1; }
	expect_eq "$(cor_status_field cor dirty)" 15 "dirty regions" || return
	check_regions "$COR" $((500 * REGION)) $((4 * REGION)) "regions 500-503" &&
	check_regions "$COR" $((600 * REGION)) $((2 * REGION)) "regions 600-601" &&
	check_regions "$COR" $((699 * REGION)) $((3 * REGION)) "regions 699-701"
}

st_writes_hydrated()
{
	local r0 r1

	# regions 31, 63 and 64 were hydrated by the reads
	r0=$(dev_read_sectors "$ORIGIN")
	write_io $((31 * REGION + 7)) 3 || return
	write_io $((64 * REGION - 2)) 4 || return
	r1=$(dev_read_sectors "$ORIGIN")
	expect_eq $((r1 - r0)) 0 "origin sectors read for writes to hydrated regions" || return
	wait_status cor dirty -ge 18 || { fail "dirty count did not reach 18"; return 1; }
	expect_eq "$(cor_bitmap cor dirty 31 34)" "31 63-64" \
		"dirty bitmap of regions 31..64" || return
	check_regions "$COR" $((31 * REGION)) "$REGION" "region 31" &&
	check_regions "$COR" $((63 * REGION)) $((2 * REGION)) "regions 63-64"
}

st_counts_match()
{
	local h d want_h want_d

	want_h=$(ranges_normalize "$BASELINE $READ_SET $WRITE_SET")
	want_d=$(ranges_normalize "$WRITE_SET")
	wait_status cor hydrating -eq 0 || return
	h=$(cor_bitmap cor hydrated 0 "$TOTAL")
	d=$(cor_bitmap cor dirty 0 "$TOTAL")
	expect_eq "$h" "$want_h" "hydrated bitmap" || return
	expect_eq "$d" "$want_d" "dirty bitmap" || return
	expect_eq "$(cor_status_field cor hydrated)" "$(ranges_count "$h")" \
		"hydrated count vs bitmap" || return
	expect_eq "$(cor_status_field cor dirty)" "$(ranges_count "$d")" \
		"dirty count vs bitmap" || return
	expect_eq "$(cor_status_field cor copies_failed)" 0 "copies_failed"
}

st_whole_device()
{
	local st0 st1

	expect_dev_matches_file "whole device" "$COR" 0 "$ORIGIN_SECTORS" "$MODEL" || return
	expect_ok "suspend" dmsetup suspend "$(dm_name cor)" || return
	expect_ok "resume" dmsetup resume "$(dm_name cor)" || return
	expect_dev_matches_file "whole device after suspend/resume" \
		"$COR" 0 "$ORIGIN_SECTORS" "$MODEL" || return
	wait_hydrated cor "$TOTAL" 60 ||
		{ fail "not all regions hydrated after a full read"; return 1; }
	st0=$(cor_status_fields cor hydrated dirty)
	cor_remove cor || return
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "re-create: $COR_LAST_OUTPUT"; return 1; }
	st1=$(cor_status_fields cor hydrated dirty)
	expect_eq "$st1" "$st0" "hydrated and dirty after re-creation" || return
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "$(ranges_normalize "$WRITE_SET")" \
		"dirty bitmap after re-creation" || return
	expect_dev_matches_file "whole device after re-creation" \
		"$COR" 0 "$ORIGIN_SECTORS" "$MODEL" || return
	# fully hydrated: the destination is the device
	expect_dev_matches_file "destination" "$DEST" 0 "$ORIGIN_SECTORS" "$MODEL"
}

run_subtest "unaligned reads straddling regions return the origin, hydrate whole regions" \
	st_unaligned_reads
run_subtest "partial writes to unhydrated regions copy the rest of the region" \
	st_partial_writes_unhydrated
run_subtest "whole-region writes do not read the origin" st_whole_region_writes
run_subtest "partial writes to hydrated regions do not read the origin" st_writes_hydrated
run_subtest "status counts match the bitmaps and the I/O done" st_counts_match
run_subtest "device matches the model after suspend/resume and re-creation" st_whole_device

cor_test_done
