#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_ctr.sh: the constructor contract of dm-cor.
#
# Every invalid table line is refused, logs a "cor: <reason>" line and
# leaves no device; the extremes of the grammar are accepted and work;
# "dmsetup table" prints the line back; existing metadata refuses another
# region size and a second live device, and keeps its state across a live
# reload and a re-creation.

. "$(dirname "$0")/lib.sh"

cor_test_init
ktap_plan 6

SEED=$((RANDOM * 32768 + RANDOM))
REGION=64

cor_setup_devs 32M 32M 4M || cor_bail "cannot create the test devices"
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
L=$ORIGIN_SECTORS
# too short for a length of $L: origin/destination of half the size
slice_create short 3 16M || cor_bail "cannot create the short slice"
SHORT=$(dm_path short)
# one-sector metadata: too small for any layout
slice_create meta512 2 1 || cor_bail "cannot create the tiny metadata slice"
META512=$(dm_path meta512)

# The newest "cor: <reason>" kernel log line (timestamped, so a new refusal
# gives a different line).
last_cor_msg() { dmesg 2>/dev/null | grep -E 'device-mapper: table: .*: cor: ' | tail -n 1; }

declare -A REFUSAL_MSG=()
LAST_COR_MSG=$(last_cor_msg)

# try_bad WHAT TABLE [dmsetup options]: the table must be refused, leave no
# device and not touch the origin
try_bad()
{
	local what=$1 table=$2 msg

	shift 2
	if dm_create bad "$table" "$@"; then
		fail "accepted: $what: '$table'"
		dm_remove bad
		zero_dev "$META"
		return 1
	fi
	if dm_exists bad; then
		fail "refused but left a device: $what"
		dm_remove bad
		return 1
	fi
	msg=$(last_cor_msg)
	if [ "$msg" == "$LAST_COR_MSG" ]; then
		REFUSAL_MSG[$what]=
	else
		REFUSAL_MSG[$what]=${msg#*: cor: }
		LAST_COR_MSG=$msg
	fi
	ktap_diag "refused: $what: ${REFUSAL_MSG[$what]:-(no cor: line)}"
	return 0
}

# Smallest metadata that a region-8 table does NOT fit: one metadata block
# less than a freshly formatted region-8 device uses.  Creates the slice
# "metashort"; returns non-zero when that cannot be worked out.
metadata_one_block_short()
{
	local mbs used

	cor_create probe "$ORIGIN" "$DEST" "$META" 8 || return 1
	mbs=$(cor_status_field probe metadata_block_size)
	used=$(cor_status_field probe metadata_used)
	dm_remove probe
	zero_dev "$META"
	[[ "$mbs" =~ ^[0-9]+$ && "$used" =~ ^[0-9]+$ && $used -gt 1 ]] || return 1
	ktap_diag "a region-8 table uses $used metadata blocks of $mbs sectors"
	slice_create metashort 2 $(((used - 1) * mbs))
}

st_bad_lines()
{
	local O=$ORIGIN D=$DEST M=$META T T2 n=0 bad entry what table short=

	clean_slate || return
	metadata_one_block_short && short=1
	# a table line up to a valid region size; optional arguments follow
	T="0 $L cor $O $D $M $REGION"
	# one optional argument announced, two given
	T2="$T 1 background_hydration no_discard_passdown"
	bad=(
		"no arguments|0 $L cor"
		"origin only|0 $L cor $O"
		"no metadata|0 $L cor $O $D"
		"no region size|0 $L cor $O $D $M"
		"non-numeric region size|0 $L cor $O $D $M abc"
		"region size with a suffix|0 $L cor $O $D $M 64k"
		"negative region size|0 $L cor $O $D $M -64"
		"region size 0|0 $L cor $O $D $M 0"
		"region size 100 (not a power of two)|0 $L cor $O $D $M 100"
		"region size 24 (not a power of two)|0 $L cor $O $D $M 24"
		"region size 4 (too small)|0 $L cor $O $D $M 4"
		"region size 4194304 (too big)|0 $L cor $O $D $M 4194304"
		"unknown optional argument|$T 1 foo"
		"optional count larger than the arguments|$T 2 background_hydration"
		"non-numeric optional count|$T x background_hydration"
		"negative optional count|$T -1"
		"trailing argument after the optional ones|$T2"
		"hydration_threshold without a value|$T 1 hydration_threshold"
		"hydration_threshold not a number|$T 2 hydration_threshold abc"
		"hydration_batch_size without a value|$T 1 hydration_batch_size"
		"origin shorter than the length|0 $L cor $SHORT $D $M $REGION"
		"destination shorter than the length|0 $L cor $O $SHORT $M $REGION"
		"origin == destination|0 $L cor $O $O $M $REGION"
		"metadata == destination|0 $L cor $O $D $D $REGION"
		"metadata == origin|0 $L cor $O $D $O $REGION"
		"missing origin device|0 $L cor /dev/mapper/${COR_PREFIX}nonexistent $D $M $REGION"
		"metadata of 512 bytes|0 $L cor $O $D $META512 8"
		"volatile metadata on a read-write table|0 $L cor $O $D - $REGION"
	)
	if [ -n "$short" ]; then
		bad+=("metadata one block too small|0 $L cor $O $D $(dm_path metashort) 8")
	else
		fail "could not size the metadata of a region-8 table"
	fi
	for entry in "${bad[@]}"; do
		what=${entry%%|*}
		table=${entry#*|}
		try_bad "$what" "$table" || n=$((n + 1))
	done
	# the origin was opened read-only by every attempt and never written
	expect_eq "$(origin_checksum)" "${COR_ORIGIN_SUMS[$ORIGIN]}" \
		"origin checksum after the refusals"
	ktap_diag "${#bad[@]} bad table lines tried, $n not refused"
	[ $n -eq 0 ]
}

st_refusals_logged()
{
	local what n=0

	[ ${#REFUSAL_MSG[@]} -gt 0 ] || { fail "no refusal recorded"; return 1; }
	for what in "${!REFUSAL_MSG[@]}"; do
		if [ -z "${REFUSAL_MSG[$what]}" ]; then
			fail "no 'cor: <reason>' kernel log line for: $what"
			n=$((n + 1))
		fi
	done
	[ $n -eq 0 ]
}

# check_works NAME REGION TOTAL_REGIONS: status geometry and a data read
check_works()
{
	local name=$1 region=$2 total=$3 last=$((ORIGIN_BLOCKS - 16))

	expect_eq "$(cor_status_field "$name" region_size)" "$region" "$name region_size" || return
	expect_eq "$(cor_status_field "$name" total_regions)" "$total" \
		"$name total_regions" || return
	expect_ne "$(cor_status_field "$name" mode)" "fail" "$name mode" || return
	expect_ok "$name: first blocks read back" \
		"$COR_PATTERN" verify "$(dm_path "$name")" 0 16 "$SEED" &&
	expect_ok "$name: last blocks read back" \
		"$COR_PATTERN" verify "$(dm_path "$name")" $last 16 "$SEED"
}

# a clean slate: no cor device left by a failed subtest, zeroed metadata
clean_slate()
{
	cor_remove_all && zero_dev "$META"
}

st_extremes()
{
	local mdf

	clean_slate || return

	# region size 8: the smallest
	cor_create r8 "$ORIGIN" "$DEST" "$META" 8 ||
		{ fail "region size 8 refused: $COR_LAST_OUTPUT"; return 1; }
	check_works r8 8 $((L / 8)) || return
	cor_remove r8 || return
	zero_dev "$META"

	# region size 2097152 (1 GiB): the largest, one partial region here
	cor_create rmax "$ORIGIN" "$DEST" "$META" 2097152 ||
		{ fail "region size 2097152 refused: $COR_LAST_OUTPUT"; return 1; }
	check_works rmax 2097152 1 || return
	cor_remove rmax || return
	zero_dev "$META"

	# volatile metadata with a read-only table
	cor_create --readonly vol "$ORIGIN" "$DEST" - "$REGION" ||
		{ fail "'-' metadata with --readonly refused: $COR_LAST_OUTPUT"; return 1; }
	check_works vol "$REGION" $((L / REGION)) || return
	mdf=$(cor_status "$(dm_name vol)" | awk '{ print $4, $5 }')
	expect_eq "$mdf" "- -/-" "volatile metadata status fields" || return
	expect_fail "write to the read-only volatile device" \
		dd if=/dev/zero of="$(dm_path vol)" bs=4096 count=1 oflag=direct \
		status=none || return
	expect_ok "volatile device still reads the origin after the refused write" \
		"$COR_PATTERN" verify "$(dm_path vol)" 0 16 "$SEED" || return
	cor_remove vol || return

	# all four optional arguments; background hydration copies everything
	cor_create all "$ORIGIN" "$DEST" "$META" "$REGION" background_hydration \
		hydration_threshold 4 hydration_batch_size 2 no_discard_passdown ||
		{ fail "all optional arguments refused: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_status_field all core:hydration_threshold)" 4 \
		"hydration_threshold in status" || return
	expect_eq "$(cor_status_field all core:hydration_batch_size)" 2 \
		"hydration_batch_size in status" || return
	wait_hydrated all $((L / REGION)) 90 ||
		{ fail "background hydration did not finish"; return 1; }
	expect_eq "$(cor_status_field all dirty)" 0 \
		"dirty regions after background hydration" || return
	expect_eq "$(cor_status_field all copies_failed)" 0 "copies_failed" || return
	expect_ok "destination holds the origin after background hydration" \
		"$COR_PATTERN" verify "$DEST" 0 "$ORIGIN_BLOCKS" "$SEED" || return
	cor_remove all || return
	zero_dev "$META"
}

st_table_printed_back()
{
	local o d m

	clean_slate || return
	o=$(dm_majmin origin) d=$(dm_majmin dest) m=$(dm_majmin meta)
	cor_create tp "$ORIGIN" "$DEST" "$META" 128 ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(dmsetup table "$(dm_name tp)")" "0 $L cor $o $d $m 128" \
		"table without optional args"
	cor_remove tp
	zero_dev "$META"

	cor_create tp "$ORIGIN" "$DEST" "$META" 256 no_discard_passdown hydration_batch_size 3 ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(dmsetup table "$(dm_name tp)")" \
		"0 $L cor $o $d $m 256 3 no_discard_passdown hydration_batch_size 3" \
		"table with optional args"
	cor_remove tp
	zero_dev "$META"

	cor_create --readonly tp "$ORIGIN" "$DEST" - "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(dmsetup table "$(dm_name tp)")" "0 $L cor $o $d - $REGION" "volatile table"
	cor_remove tp
}

# Blocks used below: block 100 in region 12, block 300 in region 37 (64-sector
# regions are 8 blocks).
st_other_region_size_refused()
{
	local t0 info tables

	clean_slate || return
	cor_create keep "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	expect_ok "write block 100" \
		"$COR_PATTERN" stamp "$(dm_path keep)" 100 1 "$SEED" --pattern-version 7 || return
	expect_ok "read blocks 200..215" \
		"$COR_PATTERN" verify "$(dm_path keep)" 200 16 "$SEED" || return
	wait_hydrated keep 3 || { fail "regions did not hydrate"; return 1; }
	t0=$(dmsetup table "$(dm_name keep)")

	expect_fail "reload with region size 128 on existing metadata" \
		dmsetup load "$(dm_name keep)" \
		--table "$(cor_table "$ORIGIN" "$DEST" "$META" 128)" || return
	info=$(dmsetup info "$(dm_name keep)")
	tables=$(grep 'Tables present' <<<"$info")
	grep -q 'Tables present: *LIVE$' <<<"$info" ||
		{ fail "a table other than the live one is present: $tables"; return 1; }
	expect_eq "$(dmsetup table "$(dm_name keep)")" "$t0" \
		"table after the refused reload" || return
	expect_eq "$(cor_status_field keep region_size)" "$REGION" \
		"region_size after the refused reload" || return
	expect_eq "$(cor_status_field keep dirty)" 1 \
		"dirty regions after the refused reload" || return
	expect_eq "$(cor_bitmap keep dirty 0 $((L / REGION)))" "12" \
		"dirty bitmap after the refused reload" || return
	# the device keeps working: the written block, origin data around it
	expect_ok "written block reads back" \
		"$COR_PATTERN" verify "$(dm_path keep)" 100 1 "$SEED" --pattern-version 7 &&
	expect_ok "origin data around it" "$COR_PATTERN" verify "$(dm_path keep)" 96 4 "$SEED" &&
	expect_ok "origin data after it" "$COR_PATTERN" verify "$(dm_path keep)" 101 99 "$SEED" &&
	expect_ok "new write after the refused reload" \
		"$COR_PATTERN" stamp "$(dm_path keep)" 102 1 "$SEED" --pattern-version 8 &&
	expect_ok "and it reads back" \
		"$COR_PATTERN" verify "$(dm_path keep)" 102 1 "$SEED" --pattern-version 8 &&
	expect_eq "$(cor_status_field keep dirty)" 1 \
		"dirty regions after a second write to region 12"
}

st_state_kept()
{
	local h0

	# a second device on live metadata would corrupt it
	if cor_create second "$ORIGIN" "$DEST" "$META" "$REGION"; then
		fail "a second cor device on live metadata was accepted"
		return 1
	fi
	# live reload with the same table, right after a write (no periodic
	# commit in between): the new table must see the write
	expect_ok "write block 300" \
		"$COR_PATTERN" stamp "$(dm_path keep)" 300 1 "$SEED" --pattern-version 9 || return
	h0=$(cor_status_field keep hydrated)
	expect_ok "load the same table" dmsetup load "$(dm_name keep)" \
		--table "$(dmsetup table "$(dm_name keep)")" || return
	expect_ok "resume" dmsetup resume "$(dm_name keep)" || return
	expect_eq "$(cor_status_field keep dirty)" 2 "dirty regions after a live reload" || return
	expect_eq "$(cor_bitmap keep dirty 0 $((L / REGION)))" "12 37" \
		"dirty bitmap after a live reload" || return
	expect_cmp "$(cor_status_field keep hydrated)" -ge "$h0" \
		"hydrated regions after a live reload" || return
	expect_ok "block 300 after the reload" \
		"$COR_PATTERN" verify "$(dm_path keep)" 300 1 "$SEED" --pattern-version 9 &&
	expect_ok "block 100 after the reload" \
		"$COR_PATTERN" verify "$(dm_path keep)" 100 1 "$SEED" --pattern-version 7 &&
	expect_ok "block 102 after the reload" \
		"$COR_PATTERN" verify "$(dm_path keep)" 102 1 "$SEED" --pattern-version 8 || return

	# remove, then re-create: a different region size is refused, the same
	# table finds the state
	h0=$(cor_status_field keep hydrated)
	cor_remove keep || return
	if cor_create keep2 "$ORIGIN" "$DEST" "$META" 128; then
		fail "re-creation with region size 128 on region-64 metadata accepted"
		return 1
	fi
	cor_create keep "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "re-creation with the same table refused: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_status_field keep dirty)" 2 "dirty regions after re-creation" || return
	expect_cmp "$(cor_status_field keep hydrated)" -ge "$h0" \
		"hydrated regions after re-creation" || return
	expect_ok "block 300 after re-creation" \
		"$COR_PATTERN" verify "$(dm_path keep)" 300 1 "$SEED" --pattern-version 9 &&
	expect_ok "block 100 after re-creation" \
		"$COR_PATTERN" verify "$(dm_path keep)" 100 1 "$SEED" --pattern-version 7 &&
	expect_ok "block 102 after re-creation" \
		"$COR_PATTERN" verify "$(dm_path keep)" 102 1 "$SEED" --pattern-version 8 &&
	expect_ok "origin data elsewhere" "$COR_PATTERN" verify "$(dm_path keep)" 0 100 "$SEED" &&
	expect_ok "origin data after block 300" \
		"$COR_PATTERN" verify "$(dm_path keep)" 301 200 "$SEED"
}

run_subtest "bad table lines are refused and leave no device" st_bad_lines
run_subtest "every refusal logs 'cor: <reason>'" st_refusals_logged
run_subtest "extremes accepted: region 8 and 2097152, volatile read-only, all optional args" \
	st_extremes
run_subtest "dmsetup table prints the line back" st_table_printed_back
run_subtest "other region size on existing metadata refused, device keeps working" \
	st_other_region_size_refused
run_subtest "second live device refused; state kept across live reload and re-creation" \
	st_state_kept

cor_test_done
