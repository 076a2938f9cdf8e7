#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_status.sh: status, table and messages of dm-cor, field by field.
#
# The whole status line is compared, not just the fields of interest: after
# each known read, write, discard and write-zeroes the counts and counters
# are exactly what that I/O implies, nothing is hydrating at rest, the mode
# is rw.  "dmsetup table" prints the line back (devices as major:minor, the
# rest as given, whatever the order and case of the optional arguments),
# and the features and core arguments of status follow the table and the
# tunable messages.  The bitmap message prints the known pattern of
# hydrated and dirty regions as "a-b"/"a" ranges in any window, and nothing
# for an empty one.  Bad messages fail, log a line and change nothing.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

cor_test_init
cor_require_cmd blkdiscard
ktap_plan 9

SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors (32 KiB)

cor_setup_devs 16M 16M 4M || cor_bail "cannot create the test devices"
slice_create meta2 2 1M || cor_bail "cannot create the second metadata slice"
slice_create dest2 1 16M || cor_bail "cannot create the second destination slice"
META2=$(dm_path meta2)
DEST2=$(dm_path dest2)
zero_dev "$META2" || cor_bail "cannot zero $META2"
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
TOTAL=$((ORIGIN_SECTORS / REGION))
COR=$(dm_path cor)
OMM=$(dev_majmin "$ORIGIN")
DMM=$(dev_majmin "$DEST")
MMM=$(dev_majmin "$META")
META_TOTAL=$(($(dev_sectors "$META") / 8))
META2_TOTAL=$(($(dev_sectors "$META2") / 8))
# 2 superblocks + 2 areas of 2 bitmaps of ceil(regions / 32640) blocks
META_USED=$((2 + 4 * ((TOTAL + 32639) / 32640)))
DATA=$COR_TMP/data
"$COR_PATTERN" gen 0 64 $((SEED + 1)) --pattern-version 1 >"$DATA" ||
	cor_bail "cannot build the data"

# The model of what status must say
H=0 D=0 ORS=0 CD=0 CF=0 ORE=0
FEATURES="0"
# default tunables: batches of 2 MiB (at least a region), 4 batches in flight
DFLT_BATCH=$((REGION >= 4096 ? 1 : 4096 / REGION))
DFLT_CORE="4 hydration_threshold $((4 * DFLT_BATCH)) hydration_batch_size $DFLT_BATCH"
CORE=$DFLT_CORE
# the hydration counters of a device that is not hydrating
IDLE="hydration_active 0 hydration_stopped_on_error 0 hydration_errors 0"
IDLE="$IDLE prefetch_queued 0 unchanged_writes 0"

# expected_status: the status line the model implies
expected_status()
{
	echo "8 $META_USED/$META_TOTAL $REGION $H/$TOTAL 0 $D rw $FEATURES $CORE" \
	     "18 origin_read_sectors $ORS copies_done $CD copies_failed $CF" \
	     "origin_read_errors $ORE $IDLE"
}

# check_status WHAT: wait until the copies are done, then compare the line
check_status()
{
	wait_status cor copies_done -ge "$CD" || { fail "$1: copies did not complete"; return 1; }
	wait_quiet cor || { fail "$1: copies still in flight"; return 1; }
	expect_eq "$(cor_status_line cor)" "$(expected_status)" "status after $1"
}

st_fresh()
{
	local t

	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_status_line cor)" "$(expected_status)" "status of a fresh device" || return
	t=$(dmsetup table "$(dm_name cor)")
	expect_eq "$t" "0 $ORIGIN_SECTORS cor $OMM $DMM $MMM $REGION" "table line" || return
	ktap_diag "status: $(cor_status_line cor)"
}

# cold_read SECTOR COUNT NR_REGIONS: a read of unhydrated regions.  Each
# region is read from the origin once, into the target's pages, and copied
# from them; when those pages cannot be allocated the reader's sectors come
# from the origin and the copy reads the region again.  The counter must
# fall within those bounds and the model takes what it says.
cold_read()
{
	local o0 o1 msg min=$(($3 * REGION))

	o0=$(cor_status_field cor origin_read_sectors)
	dd_read "$COR" "$1" "$2" "$COR_TMP/r" ||
		{ fail "read of sectors $1+$2 failed"; return 1; }
	H=$((H + $3)) CD=$((CD + $3))
	wait_status cor copies_done -ge "$CD" && wait_quiet cor ||
		{ fail "copies after the read of $1+$2 did not complete"; return 1; }
	o1=$(cor_status_field cor origin_read_sectors)
	expect_cmp $((o1 - o0)) -ge "$min" "origin_read_sectors for a read of $1+$2" &&
	expect_cmp $((o1 - o0)) -le $((min + $2)) "origin_read_sectors for a read of $1+$2" ||
		return
	msg="read of $1+$2 read the origin $((o1 - o0)) sectors (no memory for a cold read?)"
	[ $((o1 - o0)) -eq "$min" ] || ktap_diag "$msg"
	ORS=$((ORS + o1 - o0))
}

st_counts()
{
	local r0 r1

	r0=$(dev_read_sectors "$ORIGIN")
	# 8 sectors inside region 10, a region copied
	cold_read $((10 * REGION + 16)) 8 1 || return
	check_status "a partial read of region 10" || return
	# one read across regions 1-3
	cold_read $((1 * REGION)) $((3 * REGION)) 3 || return
	check_status "reading regions 1-3" || return
	# one sector of 63, all of 64, one of 65 (across a 64-bit word of the
	# bitmap)
	cold_read $((64 * REGION - 1)) $((REGION + 2)) 3 || return
	# the last region
	cold_read $((511 * REGION)) "$REGION" 1 || return
	check_status "reading regions 63-65 and 511" || return
	r1=$(dev_read_sectors "$ORIGIN")
	expect_eq $((r1 - r0)) "$ORS" "origin sectors read (sysfs) vs origin_read_sectors" || return

	# hydrated regions again: nothing changes
	dd_read "$COR" $((1 * REGION)) $((3 * REGION)) "$COR_TMP/r" &&
	dd_read "$COR" $((10 * REGION)) "$REGION" "$COR_TMP/r" ||
		{ fail "re-read of hydrated regions failed"; return 1; }
	check_status "re-reading hydrated regions" || return

	# whole region 20: hydrated and dirty, no origin read
	dd_write "$DATA" 0 "$COR" $((20 * REGION)) "$REGION" ||
		{ fail "write of region 20 failed"; return 1; }
	H=$((H + 1)) D=$((D + 1))
	check_status "a whole-region write to region 20" || return
	# 3 sectors of unhydrated region 30: the region is copied first
	dd_write "$DATA" 0 "$COR" $((30 * REGION + 5)) 3 ||
		{ fail "write in region 30 failed"; return 1; }
	H=$((H + 1)) D=$((D + 1)) ORS=$((ORS + REGION)) CD=$((CD + 1))
	check_status "a partial write to region 30" || return
	# 1 sector of clean region 2: becomes dirty
	dd_write "$DATA" 0 "$COR" $((2 * REGION + 9)) 1 ||
		{ fail "write in region 2 failed"; return 1; }
	D=$((D + 1))
	check_status "a write to clean region 2" || return
	# discard of regions 40-41: hydrated and dirty without any copy
	discard "$COR" $((40 * REGION)) $((2 * REGION)) || return
	H=$((H + 2)) D=$((D + 2))
	check_status "a discard of regions 40-41" || return
	# partial discard of unhydrated region 50: nothing
	discard "$COR" $((50 * REGION + 8)) 16 || return
	check_status "a partial discard of unhydrated region 50" || return
	# write-zeroes of region 60: like a whole-region write
	zeroout "$COR" $((60 * REGION)) "$REGION" || return
	H=$((H + 1)) D=$((D + 1))
	check_status "a write-zeroes of region 60" || return
	r1=$(dev_read_sectors "$ORIGIN")
	expect_eq $((r1 - r0)) "$ORS" \
		"origin sectors read (sysfs) vs origin_read_sectors at the end"
}

HYD="1-3 10 20 30 40-41 60 63-65 511"
DIRTY="2 20 30 40-41 60"

# bitmap_is KIND FIRST NR EXPECTED: the raw reply, exactly
bitmap_is()
{
	local out

	out=$(cor_message cor bitmap "$1" "$2" "$3" 2>&1) ||
		{ fail "bitmap $1 $2 $3 failed: $out"; return 1; }
	expect_eq "$out" "$4" "bitmap $1 $2 $3"
}

st_bitmap()
{
	local out

	bitmap_is hydrated 0 "$TOTAL" "$HYD" || return
	bitmap_is dirty 0 "$TOTAL" "$DIRTY" || return
	expect_eq "$(ranges_count "$HYD")" "$H" "(test) hydrated model" || return
	expect_eq "$(ranges_count "$DIRTY")" "$D" "(test) dirty model" || return
	# windows starting and ending inside ranges
	bitmap_is hydrated 2 9 "2-3 10" || return
	bitmap_is hydrated 3 7 "3" || return
	bitmap_is hydrated 41 1 "41" || return
	bitmap_is hydrated 41 20 "41 60" || return
	bitmap_is hydrated 64 1 "64" || return
	bitmap_is hydrated 64 100 "64-65" || return
	bitmap_is hydrated 0 2 "1" || return
	bitmap_is hydrated 500 12 "511" || return
	bitmap_is hydrated 511 1 "511" || return
	bitmap_is dirty 1 2 "2" || return
	bitmap_is dirty 3 50 "20 30 40-41" || return
	bitmap_is dirty 511 1 "" || return
	# windows with nothing set print nothing at all
	bitmap_is hydrated 4 6 "" || return
	bitmap_is hydrated 66 445 "" || return
	bitmap_is dirty 21 9 "" || return
	# message and bitmap names are case-insensitive
	out=$(cor_message cor BITMAP Hydrated 0 "$TOTAL" 2>&1)
	expect_eq "$out" "$HYD" "BITMAP Hydrated" || return
	out=$(cor_message cor Bitmap DIRTY 0 "$TOTAL" 2>&1)
	expect_eq "$out" "$DIRTY" "Bitmap DIRTY"
}

st_tunables()
{
	local t0 t1

	t0=$(dmsetup table "$(dm_name cor)")
	expect_ok "hydration_threshold 100" cor_message cor hydration_threshold 100 || return
	CORE="4 hydration_threshold 100 hydration_batch_size $DFLT_BATCH"
	check_status "hydration_threshold 100" || return
	expect_ok "HYDRATION_BATCH_SIZE 4096" cor_message cor HYDRATION_BATCH_SIZE 4096 || return
	CORE="4 hydration_threshold 100 hydration_batch_size 4096"
	check_status "HYDRATION_BATCH_SIZE 4096" || return
	expect_ok "hydration_threshold 4096" cor_message cor hydration_threshold 4096 || return
	expect_ok "hydration_batch_size 1" cor_message cor hydration_batch_size 1 || return
	CORE="4 hydration_threshold 4096 hydration_batch_size 1"
	check_status "hydration_threshold 4096, hydration_batch_size 1" || return
	expect_ok "hydration_threshold 1" cor_message cor hydration_threshold 1 || return
	expect_ok "hydration_batch_size 7" cor_message cor hydration_batch_size 7 || return
	CORE="4 hydration_threshold 1 hydration_batch_size 7"
	check_status "hydration_threshold 1, hydration_batch_size 7" || return
	# the table line is what was loaded, not the tunables' current values
	t1=$(dmsetup table "$(dm_name cor)")
	expect_eq "$t1" "$t0" "table line after the tunable messages"
}

BAD_MESSAGES="foo
hydration
hydration foo
hydration start now
prefetch_foo 0 8
bitmap
bitmap hydrated
bitmap hydrated 0
bitmap hydrated 0 1 2
bitmap clean 0 1
bitmap hydrate 0 1
bitmap hydrated x 1
bitmap hydrated 0 x
bitmap hydrated -1 1
bitmap hydrated 0 -1
bitmap hydrated 1x 1
bitmap hydrated 0 $((TOTAL + 1))
bitmap hydrated $((TOTAL - 1)) 2
bitmap hydrated $TOTAL 1
bitmap dirty $TOTAL 0
bitmap hydrated 18446744073709551615 1
bitmap dirty 1 18446744073709551615
bitmap dirty 0 18446744073709551616
hydration_threshold
hydration_threshold 0
hydration_threshold 4097
hydration_threshold 4294967297
hydration_threshold 99999999999999999999
hydration_threshold abc
hydration_threshold 12abc
hydration_threshold -1
hydration_threshold 5 6
hydration_batch_size
hydration_batch_size 0
hydration_batch_size 4097
hydration_batch_size x
hydration_batch_size 1 1"

# send_bad MESSAGE: must fail; "--" so that dmsetup does not take "-1"
# for an option of its own
send_bad()
{
	local out

	# shellcheck disable=SC2086 # the message is split into words
	if out=$(dmsetup message -- "$(dm_name cor)" 0 $1 2>&1 </dev/null); then
		fail "message '$1' succeeded (reply '$out'), must fail"
		return 1
	fi
}

st_bad_messages()
{
	local st0 t0 h0 d0 n=0 msg before new

	st0=$(cor_status_line cor)
	t0=$(dmsetup table "$(dm_name cor)")
	h0=$(cor_message cor bitmap hydrated 0 "$TOTAL")
	d0=$(cor_message cor bitmap dirty 0 "$TOTAL")
	before=$(klog_count)
	while IFS= read -r msg; do
		n=$((n + 1))
		send_bad "$msg"
	done <<<"$BAD_MESSAGES"
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1
	ktap_diag "$n bad messages refused"
	# one kernel log line each; if some are missing, find which
	new=$(klog_new_since "$before" | grep -c ': cor: ')
	if [ "$new" -lt "$n" ]; then
		while IFS= read -r msg; do
			before=$(klog_count)
			send_bad "$msg"
			[ "$(klog_new_since "$before" | grep -c ': cor: ')" -ge 1 ] ||
				fail "message '$msg' failed without a kernel log line"
		done <<<"$BAD_MESSAGES"
		return 1
	fi
	expect_eq "$(cor_status_line cor)" "$st0" "status after the bad messages" || return
	expect_eq "$(dmsetup table "$(dm_name cor)")" "$t0" "table after the bad messages" || return
	expect_eq "$(cor_message cor bitmap hydrated 0 "$TOTAL")" "$h0" \
		"hydrated bitmap after the bad messages" || return
	expect_eq "$(cor_message cor bitmap dirty 0 "$TOTAL")" "$d0" \
		"dirty bitmap after the bad messages"
}

# table_variant "OPTIONAL ARGS AS GIVEN" FEATURES CORE: create a device on
# a zeroed second metadata slice (and a destination of its own) with that
# tail, compare table and status.  With background_hydration the device
# starts copying at once: the counts and counters are then only numbers.
table_variant()
{
	local tail=$1 features=$2 core=$3 want st rc n='[0-9]+'

	zero_dev "$META2" || { fail "cannot zero $META2"; return 1; }
	dm_create tv "0 $ORIGIN_SECTORS cor $ORIGIN $DEST2 $META2 $tail" ||
		{ fail "create with '$tail': $COR_LAST_OUTPUT"; return 1; }
	COR_COR_DEVS+=("$(dm_name tv)")
	COR_DEV_TABLE[$(dm_name tv)]="$ORIGIN_SECTORS $ORIGIN $DEST2 $META2 $REGION"
	want="0 $ORIGIN_SECTORS cor $OMM $(dev_majmin "$DEST2") $(dev_majmin "$META2") $tail"
	expect_eq "$(dmsetup table "$(dm_name tv)")" "$want" "table line of '$tail'"
	rc=$?
	if [ $rc -eq 0 ] && [[ "$features" == *background_hydration* ]]; then
		cor_message tv hydration stop >/dev/null 2>&1
		st=$(cor_status_line tv)
		want="8 $META_USED/$META2_TOTAL $REGION $n/$TOTAL $n 0 rw $features $core"
		want="$want 18 origin_read_sectors $n copies_done $n copies_failed 0"
		want="$want origin_read_errors 0 $IDLE"
		[[ "$st" =~ ^$want$ ]] ||
			{ fail "status of '$tail': '$st' does not match '$want'"; rc=1; }
	elif [ $rc -eq 0 ]; then
		st="8 $META_USED/$META2_TOTAL $REGION 0/$TOTAL 0 0 rw $features $core"
		st="$st 18 origin_read_sectors 0 copies_done 0 copies_failed 0"
		st="$st origin_read_errors 0 $IDLE"
		expect_eq "$(cor_status_line tv)" "$st" "status of '$tail'"
		rc=$?
	fi
	cor_remove tv || return 1
	return $rc
}

st_table_variants()
{
	local dflt=$DFLT_CORE args

	table_variant "$REGION" "0" "$dflt" || return
	table_variant "$REGION 0" "0" "$dflt" || return
	table_variant "$REGION 1 no_discard_passdown" "1 no_discard_passdown" "$dflt" || return
	table_variant "$REGION 4 hydration_batch_size 9 Hydration_Threshold 4096" "0" \
		"4 hydration_threshold 4096 hydration_batch_size 9" || return
	# a repeated argument: the last one wins
	table_variant "$REGION 4 hydration_threshold 5 hydration_threshold 7" "0" \
		"4 hydration_threshold 7 hydration_batch_size $DFLT_BATCH" || return
	table_variant "$REGION 1 background_hydration" "1 background_hydration" "$dflt" || return
	table_variant "$REGION 2 no_discard_passdown background_hydration" \
		"2 background_hydration no_discard_passdown" "$dflt" || return
	args="$REGION 6 No_Discard_Passdown hydration_threshold 16"
	args="$args BACKGROUND_HYDRATION hydration_batch_size 4096"
	table_variant "$args" \
		"2 background_hydration no_discard_passdown" \
		"4 hydration_threshold 16 hydration_batch_size 4096"
}

# event_nr NAME: the device's dm event counter
event_nr()
{
	dmsetup info "$(dm_name "$1")" 2>/dev/null | sed -n 's/^Event number: *//p'
}

st_background()
{
	local len=4096 n=$((4096 / REGION)) e0 want i out

	slice_create dest3 3 2M && slice_create meta3 2 1M || return
	zero_dev "$(dm_path meta3)" || { fail "cannot zero meta3"; return 1; }
	# created without a table first, so that the event number is read
	# before hydration can start
	out=$(dmsetup create "$(dm_name bg)" --notable 2>&1) ||
		{ fail "create bg without a table: $out"; return 1; }
	COR_DEVS+=("$(dm_name bg)")
	e0=$(event_nr bg)
	out=$(cor_table --len "$len" "$ORIGIN" "$(dm_path dest3)" "$(dm_path meta3)" "$REGION" \
		background_hydration hydration_threshold 4 hydration_batch_size 2 |
		dmsetup load "$(dm_name bg)" 2>&1) &&
	out=$(dmsetup resume "$(dm_name bg)" 2>&1) ||
		{ fail "load with background_hydration: $out"; return 1; }
	COR_COR_DEVS+=("$(dm_name bg)")
	COR_DEV_TABLE[$(dm_name bg)]="$len $ORIGIN $(dm_path dest3) $(dm_path meta3) $REGION"
	wait_hydrated bg "$n" 60 || { fail "background hydration did not complete"; return 1; }
	wait_status bg hydration_active -eq 0 ||
		{ fail "hydration still active when complete"; return 1; }
	want="8 $((2 + 4))/$(($(dev_sectors "$(dm_path meta3)") / 8)) $REGION $n/$n 0 0 rw"
	want="$want 1 background_hydration"
	want="$want 4 hydration_threshold 4 hydration_batch_size 2 18 origin_read_sectors $len"
	want="$want copies_done $n copies_failed 0 origin_read_errors 0 $IDLE"
	expect_eq "$(cor_status_line bg)" "$want" "status after background hydration" || return
	# the all-hydrated event: the counter moves (bounded poll)
	for ((i = 0; i < 50; i++)); do
		[ "$(event_nr bg)" -gt "$e0" ] 2>/dev/null && break
		sleep 0.2
	done
	expect_cmp "$(event_nr bg)" -gt "$e0" \
		"dm event number after every region was hydrated" || return
	dmesg | grep -q "cor: $(dm_majmin bg): every region is hydrated" ||
		{ fail "no kernel log line saying that every region is hydrated"; return 1; }
	out=$("$COR_PATTERN" verify "$(dm_path dest3)" 0 $((len / 8)) "$SEED" --quiet 2>&1) ||
		{ fail "destination after background hydration: $out"; return 1; }
	expect_ok "hydration stop" cor_message bg hydration stop &&
	expect_ok "hydration start" cor_message bg hydration start &&
	expect_ok "HYDRATION Stop" cor_message bg HYDRATION Stop || return
	expect_eq "$(cor_status_line bg)" "$want" "status after the hydration messages" || return
	cor_remove bg
}

st_volatile()
{
	local want ors

	dm_create vol "0 $ORIGIN_SECTORS cor $ORIGIN $DEST2 - $REGION" --readonly ||
		{ fail "create --readonly with '-': $COR_LAST_OUTPUT"; return 1; }
	COR_COR_DEVS+=("$(dm_name vol)")
	COR_DEV_TABLE[$(dm_name vol)]="$ORIGIN_SECTORS $ORIGIN $DEST2 - $REGION"
	expect_eq "$(dmsetup table "$(dm_name vol)")" \
		"0 $ORIGIN_SECTORS cor $OMM $(dev_majmin "$DEST2") - $REGION" \
		"table line of the volatile device" || return
	want="- -/- $REGION 0/$TOTAL 0 0 rw 0 $DFLT_CORE"
	want="$want 18 origin_read_sectors 0 copies_done 0 copies_failed 0"
	want="$want origin_read_errors 0 $IDLE"
	expect_eq "$(cor_status_line vol)" "$want" "status of the volatile device" || return
	# 8 sectors of region 5: counted like on any device
	dd_read "$(dm_path vol)" $((5 * REGION + 8)) 8 "$COR_TMP/r" ||
		{ fail "read of the volatile device failed"; return 1; }
	wait_hydrated vol 1 || { fail "volatile device did not hydrate"; return 1; }
	# the region once (cold read), or the 8 sectors and then the region
	ors=$(cor_status_field vol origin_read_sectors)
	[ "$ors" == "$REGION" ] || expect_eq "$ors" $((8 + REGION)) "origin_read_sectors" || return
	want="- -/- $REGION 1/$TOTAL 0 0 rw 0 $DFLT_CORE"
	want="$want 18 origin_read_sectors $ors copies_done 1 copies_failed 0"
	want="$want origin_read_errors 0 $IDLE"
	expect_eq "$(cor_status_line vol)" "$want" \
		"status of the volatile device after a read" || return
	expect_eq "$(cor_message vol bitmap hydrated 0 "$TOTAL")" "5" \
		"volatile hydrated bitmap" || return
	cor_remove vol
}

st_recreate()
{
	# counters start afresh with a new table, the counts are the metadata's
	cor_remove cor || return
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "re-create: $COR_LAST_OUTPUT"; return 1; }
	ORS=0 CD=0 CF=0 ORE=0
	CORE=$DFLT_CORE
	expect_eq "$(cor_status_line cor)" "$(expected_status)" "status after re-creation" || return
	bitmap_is hydrated 0 "$TOTAL" "$HYD" || return
	bitmap_is dirty 0 "$TOTAL" "$DIRTY"
}

run_subtest "fresh device: status and table lines exact" st_fresh
run_subtest "status counts and counters follow reads, writes, discards, write-zeroes" st_counts
run_subtest "bitmap message: ranges in any window, nothing when empty" st_bitmap
run_subtest "tunable messages change the core args only" st_tunables
run_subtest "bad messages fail, log a line and change nothing" st_bad_messages
run_subtest "table line printed back; features and core args follow the table" st_table_variants
run_subtest "background_hydration: every region copied once, counted, event raised" st_background
run_subtest "volatile read-only device: '-' metadata fields, table, counts" st_volatile
run_subtest "re-created device: counters reset, counts and bitmaps kept" st_recreate

cor_test_done
