#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_faults.sh: origin read errors, slow devices, destination write errors.
#
# The origin is a dm-linear device with an "error" segment in its middle:
# reads of that range through cor fail with EIO and mark nothing, copies of
# regions that touch it fail and are counted, a whole-region write over it
# still works, the rest of the device works; after the origin table is
# reloaded without the error segment the same regions read and hydrate.
# With dm-delay under origin and destination a mixed workload of reads,
# writes and flushes completes in bounded time and verifies.  With dm-flakey
# error_writes under the destination, failed copy-on-read writes leave the
# region unhydrated, are counted, and the reader sees neither an error nor
# wrong data, while user writes fail with EIO.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

cor_test_init
cor_require_cmd timeout
ktap_plan 4

SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors (32 KiB)

cor_setup_devs 8M 8M 4M || cor_bail "cannot create the test devices"
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
N=$ORIGIN_SECTORS
TOTAL=$((N / REGION))
MODEL=$COR_TMP/model
DATA=$COR_TMP/data
"$COR_PATTERN" gen 0 "$ORIGIN_BLOCKS" "$SEED" >"$MODEL" || cor_bail "cannot build the model"
"$COR_PATTERN" gen 0 256 $((SEED + 1)) --pattern-version 1 >"$DATA" ||
	cor_bail "cannot build the data"

# the error segment: the second half of region 100 to the first half of 103
ES=$((100 * REGION + REGION / 2))
EL=$((3 * REGION))
dm_create_lines eorigin "0 $ES linear $ORIGIN 0
$ES $EL error
$((ES + EL)) $((N - ES - EL)) linear $ORIGIN $((ES + EL))" ||
	cor_bail "cannot create the origin with an error segment: $COR_LAST_OUTPUT"
EORIGIN=$(dm_path eorigin)
COR=$(dm_path cor)

# counters NAME: "copies_done copies_failed origin_read_errors"
counters()
{
	cor_status_fields "$1" copies_done copies_failed origin_read_errors
}

st_origin_errors()
{
	local c0 c1 cf

	cor_create cor "$EORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "create on the erroring origin: $COR_LAST_OUTPUT"; return 1; }
	# all of region 101: inside the error segment
	expect_io_error "read of region 101" \
		dd_read "$COR" $((101 * REGION)) "$REGION" "$COR_TMP/r" || return
	wait_quiet cor || return
	expect_eq "$(counters cor)" "0 0 1" \
		"copies_done copies_failed origin_read_errors after the failed read" || return
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "" \
		"hydrated bitmap after the failed read" || return
	# the good half of region 100 reads fine, its copy fails, unseen
	expect_dev_matches_file "read of the good half of region 100" \
		"$COR" $((100 * REGION)) $((REGION / 2)) "$MODEL" || return
	wait_status cor copies_failed -ge 1 && wait_quiet cor ||
		{ fail "the copy of region 100 did not fail"; return 1; }
	expect_eq "$(counters cor)" "0 1 2" "counters after the copy of region 100 failed" || return
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "" \
		"hydrated bitmap after the failed copy" || return
	# one read of regions 97-106: fails, yet the regions outside the
	# segment (whose bios succeeded) are copied, the ones inside are not
	expect_io_error "read of regions 97-106" \
		dd_read "$COR" $((97 * REGION)) $((10 * REGION)) "$COR_TMP/r" || return
	wait_hydrated cor 6 || { fail "regions 97-99 and 104-106 did not hydrate"; return 1; }
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "97-99 104-106" \
		"hydrated bitmap after the failed large read" || return
	# a whole-region write needs no origin: region 101 works
	dd_write "$DATA" 0 "$COR" $((101 * REGION)) "$REGION" ||
		{ fail "whole-region write to region 101 failed"; return 1; }
	model_write "$MODEL" "$DATA" 0 $((101 * REGION)) "$REGION"
	expect_dev_matches_file "region 101 after the whole-region write" \
		"$COR" $((101 * REGION)) "$REGION" "$MODEL" || return
	# a partial write to region 102 needs its copy, which fails: EIO
	cf=$(cor_status_field cor copies_failed)
	expect_io_error "partial write to region 102" \
		dd_write "$DATA" 200 "$COR" $((102 * REGION + 8)) 8 || return
	wait_quiet cor || return
	expect_cmp "$(cor_status_field cor copies_failed)" -gt "$cf" \
		"copies_failed after the failed partial write" || return
	expect_eq "$(cor_bitmap cor hydrated 95 15)" "97-99 101 104-106" \
		"hydrated bitmap of regions 95-109" || return
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "101" "dirty bitmap" || return
	# the rest of the device works
	expect_dev_matches_file "regions 0-96" "$COR" 0 $((97 * REGION)) "$MODEL" &&
	expect_dev_matches_file "regions 97-99" "$COR" $((97 * REGION)) $((3 * REGION)) "$MODEL" &&
	expect_dev_matches_file "regions 104-511" \
		"$COR" $((104 * REGION)) $((N - 104 * REGION)) "$MODEL" || return
	c0=$(cor_status_field cor origin_read_errors)
	wait_hydrated cor $((TOTAL - 3)) 60 ||
		{ fail "the good regions did not all hydrate"; return 1; }
	c1=$(cor_status_field cor origin_read_errors)
	expect_eq "$c1" "$c0" "origin_read_errors while reading good regions" || return
	expect_eq "$(cor_bitmap cor hydrated 95 15)" "95-99 101 104-109" \
		"hydrated bitmap of regions 95-109 at the end" || return
	expect_eq "$(cor_status_field cor mode)" rw "mode"
}

st_origin_repaired()
{
	local cf

	dm_exists cor || { fail "no cor device"; return 1; }
	cf=$(cor_status_field cor copies_failed)
	dm_reload eorigin "0 $N linear $ORIGIN 0" || return
	# regions 100, 102 and 103 read (partly, so their copies read the
	# origin) and hydrate; 101 keeps the written data
	expect_dev_matches_file "region 100" "$COR" $((100 * REGION + 40)) 8 "$MODEL" &&
	expect_dev_matches_file "region 102" "$COR" $((102 * REGION)) 8 "$MODEL" &&
	expect_dev_matches_file "region 103" "$COR" $((103 * REGION + 1)) 1 "$MODEL" || return
	wait_hydrated cor "$TOTAL" || { fail "regions 100, 102, 103 did not hydrate"; return 1; }
	expect_eq "$(cor_status_field cor copies_failed)" "$cf" \
		"copies_failed after the repair" || return
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "101" \
		"dirty bitmap after the repair" || return
	expect_dev_matches_file "regions 99-104" "$COR" $((99 * REGION)) $((6 * REGION)) "$MODEL" &&
	expect_dev_matches_file "destination regions 99-104" \
		"$DEST" $((99 * REGION)) $((6 * REGION)) "$MODEL" || return
	# a partial write to region 102 now works
	dd_write "$DATA" 200 "$COR" $((102 * REGION + 8)) 8 ||
		{ fail "partial write to region 102 failed after the repair"; return 1; }
	model_write "$MODEL" "$DATA" 200 $((102 * REGION + 8)) 8
	expect_dev_matches_file "whole device after the repair" "$COR" 0 "$N" "$MODEL" || return
	cor_remove cor
}

st_slow_devices()
{
	local dev pids=() p rc=0 t0 s off i written='' WOFFS

	slice_create dest2 1 8M && slice_create meta2 2 1M || return
	zero_dev "$(dm_path meta2)" || { fail "cannot zero meta2"; return 1; }
	# origin: 15 ms per read; destination: 10 ms per read, write, flush
	dm_create odelay "0 $N delay $ORIGIN 0 15" ||
		{ fail "cannot create the delayed origin: $COR_LAST_OUTPUT"; return 1; }
	dm_create ddelay \
		"0 $N delay $(dm_path dest2) 0 10 $(dm_path dest2) 0 10 $(dm_path dest2) 0 10" ||
		{ fail "cannot create the delayed destination: $COR_LAST_OUTPUT"; return 1; }
	cor_create slow "$(dm_path odelay)" "$(dm_path ddelay)" "$(dm_path meta2)" "$REGION" ||
		{ fail "create over delayed devices: $COR_LAST_OUTPUT"; return 1; }
	dev=$(dm_path slow)
	"$COR_PATTERN" gen 0 "$ORIGIN_BLOCKS" "$SEED" >"$COR_TMP/model2" || return
	WOFFS="$((N / 2 + 3)) $((N / 2 + 700)) $((5 * N / 8))"
	WOFFS+=" $((11 * N / 16 + 9)) $((3 * N / 4 + 64))"
	t0=$SECONDS
	# reader 1: the first quarter in 1 MiB reads (whole regions)
	timeout 60 "$COR_PATTERN" verify "$dev" 0 $((ORIGIN_BLOCKS / 4)) "$SEED" --quiet \
		>"$COR_TMP/p1" 2>&1 &
	pids+=($!)
	# reader 2: single blocks all over the second quarter (partial regions)
	(
		for ((i = 0; i < 32; i++)); do
			timeout 30 "$COR_PATTERN" verify "$dev" \
				$((ORIGIN_BLOCKS / 4 + i * 16 + i % 8)) 1 "$SEED" --quiet ||
				exit 1
		done
	) >"$COR_TMP/p2" 2>&1 &
	pids+=($!)
	# writer: unaligned writes in the second half, then a flush
	(
		off=0
		for s in $WOFFS; do
			timeout 30 dd if="$DATA" of="$dev" bs=512 skip=$off seek="$s" count=130 \
				oflag=direct conv=notrunc status=none || exit 1
			off=$((off + 130))
		done
		timeout 30 sync "$dev" || exit 1
		timeout 30 dd if="$DATA" of="$dev" bs=4096 skip=100 seek=$((7 * N / 64)) count=4 \
			oflag=direct,sync conv=notrunc status=none || exit 1
	) >"$COR_TMP/p3" 2>&1 &
	pids+=($!)
	for p in "${pids[@]}"; do
		wait "$p" || rc=1
	done
	ktap_diag "mixed workload over dm-delay: $((SECONDS - t0))s"
	if [ $rc -ne 0 ]; then
		ktap_diag "$(cat "$COR_TMP/p1" "$COR_TMP/p2" "$COR_TMP/p3" | head -n 20)"
		fail "a part of the workload failed or timed out"
		return 1
	fi
	off=0
	for s in $WOFFS; do
		model_write "$COR_TMP/model2" "$DATA" "$off" "$s" 130
		written="$written $(regions_of "$s" 130 "$REGION")"
		off=$((off + 130))
	done
	model_write "$COR_TMP/model2" "$DATA" 800 $((7 * N / 64 * 8)) 32
	written=$(ranges_normalize "$written $(regions_of $((7 * N / 64 * 8)) 32 "$REGION")")
	wait_quiet slow || return
	expect_eq "$(cor_status_fields slow copies_failed origin_read_errors mode)" "0 0 rw" \
		"copies_failed origin_read_errors mode" || return
	expect_eq "$(cor_bitmap slow dirty 0 "$TOTAL")" "$written" "dirty bitmap" || return
	expect_dev_matches_file "whole device over dm-delay" \
		"$dev" 0 "$N" "$COR_TMP/model2" || return
	# removal (a commit through the slow devices) and re-creation
	timeout 60 dmsetup suspend "$(dm_name slow)" ||
		{ fail "suspend over dm-delay did not complete"; return 1; }
	cor_remove slow || return
	cor_create slow "$(dm_path odelay)" "$(dm_path ddelay)" "$(dm_path meta2)" "$REGION" ||
		{ fail "re-create over delayed devices: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_bitmap slow dirty 0 "$TOTAL")" "$written" \
		"dirty bitmap after re-creation" || return
	expect_dev_matches_file "whole device after re-creation" \
		"$dev" 0 "$N" "$COR_TMP/model2" || return
	cor_remove slow
}

st_dest_write_errors()
{
	local dev d3 out cf fd table k0

	slice_create dest3 3 8M && slice_create meta3 2 1M || return
	zero_dev "$(dm_path meta3)" || { fail "cannot zero meta3"; return 1; }
	d3=$(dm_path dest3)
	# does this kernel's dm-flakey know error_writes?
	table="0 8 flakey $d3 0 0 3600 1 error_writes"
	if ! out=$(dmsetup create "${COR_PREFIX}flprobe" --table "$table" 2>&1); then
		dm_exists flprobe && dm_remove flprobe
		subtest_skip "dm-flakey without error_writes: $out"
		return
	fi
	dm_remove flprobe
	flakey_create fdest "$d3" up || return
	fd=$(dm_path fdest)
	cor_create fl "$ORIGIN" "$fd" "$(dm_path meta3)" "$REGION" ||
		{ fail "create over flakey: $COR_LAST_OUTPUT"; return 1; }
	dev=$(dm_path fl)
	"$COR_PATTERN" gen 0 "$ORIGIN_BLOCKS" "$SEED" >"$COR_TMP/model3" || return
	# clean regions 10-11, dirty region 20, all committed
	expect_dev_matches_file "read of regions 10-11" \
		"$dev" $((10 * REGION)) $((2 * REGION)) "$COR_TMP/model3" || return
	dd_write "$DATA" 0 "$dev" $((20 * REGION)) "$REGION" ||
		{ fail "write of region 20 failed"; return 1; }
	model_write "$COR_TMP/model3" "$DATA" 0 $((20 * REGION)) "$REGION"
	wait_hydrated fl 3 || return
	out=$(sync "$dev" 2>&1) || { fail "flush: $out"; return 1; }

	flakey_switch fdest "$d3" error_writes || return
	# cold reads: a partial one (copy through kcopyd) and a whole-region
	# one (copy of the read's data); both readers get the origin's data
	expect_dev_matches_file "partial read of region 30" \
		"$dev" $((30 * REGION + 8)) 8 "$COR_TMP/model3" &&
	expect_dev_matches_file "read of region 31" \
		"$dev" $((31 * REGION)) "$REGION" "$COR_TMP/model3" || return
	wait_status fl copies_failed -ge 2 && wait_quiet fl ||
		{ fail "the copies of regions 30 and 31 did not fail"; return 1; }
	expect_eq "$(cor_status_fields fl copies_failed origin_read_errors)" "2 0" \
		"copies_failed origin_read_errors" || return
	expect_eq "$(cor_bitmap fl hydrated 0 "$TOTAL")" "10-11 20" \
		"hydrated bitmap after the failed copies" || return
	# and again: still the origin's data, one more failure
	expect_dev_matches_file "second read of region 30" \
		"$dev" $((30 * REGION)) "$REGION" "$COR_TMP/model3" || return
	wait_status fl copies_failed -ge 3 && wait_quiet fl ||
		{ fail "the second copy of region 30 did not fail"; return 1; }
	expect_eq "$(cor_status_field fl copies_failed)" 3 \
		"copies_failed after the second read" || return
	# hydrated regions read from the destination as before
	expect_dev_matches_file "regions 10-11" \
		"$dev" $((10 * REGION)) $((2 * REGION)) "$COR_TMP/model3" &&
	expect_dev_matches_file "region 20" \
		"$dev" $((20 * REGION)) "$REGION" "$COR_TMP/model3" || return
	# user writes fail with EIO: to clean, dirty and unhydrated regions
	expect_io_error "write to clean region 10" \
		dd_write "$DATA" 300 "$dev" $((10 * REGION + 4)) 4 &&
	expect_io_error "write to dirty region 20" dd_write "$DATA" 300 "$dev" $((20 * REGION)) 8 &&
	expect_io_error "whole-region write to region 40" \
		dd_write "$DATA" 300 "$dev" $((40 * REGION)) "$REGION" &&
	expect_io_error "partial write to region 41" \
		dd_write "$DATA" 300 "$dev" $((41 * REGION + 4)) 4 || return
	wait_quiet fl || return
	cf=$(cor_status_field fl copies_failed)
	expect_eq "$cf" 4 "copies_failed after the failed writes (the copy for region 41)" || return
	expect_eq "$(cor_bitmap fl hydrated 0 "$TOTAL")" "10-11 20" \
		"hydrated bitmap after the failed writes" || return
	expect_eq "$(cor_bitmap fl dirty 0 "$TOTAL")" "20" \
		"dirty bitmap after the failed writes" || return
	expect_eq "$(cor_status_field fl mode)" rw \
		"mode (nothing to commit, so no metadata error)" || return
	# a failed write may leave its sectors undefined on the destination;
	# regions never written read as the origin
	model_copy "$COR_TMP/model3" $((10 * REGION + 4)) 4 "$dev"
	model_copy "$COR_TMP/model3" $((20 * REGION)) 8 "$dev"
	# 61 more cold reads (regions 0-63 but 10, 11, 20): every copy fails,
	# every reader gets the origin's data
	k0=$(klog_count)
	expect_dev_matches_file "regions 0-63 with the destination failing writes" \
		"$dev" 0 $((64 * REGION)) "$COR_TMP/model3" || return
	wait_status fl copies_failed -ge $((cf + 61)) && wait_quiet fl ||
		{ fail "the copies of regions 0-63 did not fail"; return 1; }
	cf=$(cor_status_field fl copies_failed)
	expect_eq "$cf" 65 "copies_failed after reading regions 0-63" || return
	expect_eq "$(cor_status_fields fl hydrated origin_read_errors mode)" "3 0 rw" \
		"hydrated origin_read_errors mode" || return
	# rate-limited per call site (10 in 5 s): 4 failed before these
	klog_new_since "$k0" |
		grep -q 'cor: .*copy of region .* failed (destination write error)' ||
		{ fail "no kernel log line for the failed copies"; return 1; }

	flakey_switch fdest "$d3" up || return
	expect_dev_matches_file "read of region 30 after the destination recovered" \
		"$dev" $((30 * REGION)) "$REGION" "$COR_TMP/model3" &&
	expect_dev_matches_file "read of region 31 after the destination recovered" \
		"$dev" $((31 * REGION + 16)) 8 "$COR_TMP/model3" || return
	wait_hydrated fl 5 ||
		{ fail "regions 30-31 did not hydrate after the destination recovered"; return 1; }
	expect_eq "$(cor_status_field fl copies_failed)" "$cf" \
		"copies_failed after the destination recovered" || return
	dd_write "$DATA" 300 "$dev" $((41 * REGION + 4)) 4 ||
		{ fail "write to region 41 failed after recovery"; return 1; }
	model_write "$COR_TMP/model3" "$DATA" 300 $((41 * REGION + 4)) 4
	expect_dev_matches_file "regions 0-63 at the end" \
		"$dev" 0 $((64 * REGION)) "$COR_TMP/model3" || return
	expect_dev_matches_file "destination regions 30-31" \
		"$d3" $((30 * REGION)) $((2 * REGION)) "$COR_TMP/model3" || return
	cor_remove fl
}

run_subtest "origin read errors: EIO, nothing marked, the rest works" st_origin_errors
run_subtest "after the origin is repaired the regions read and hydrate" st_origin_repaired
run_subtest "slow origin and destination (dm-delay): mixed workload completes and verifies" \
	st_slow_devices
run_subtest "destination write errors (dm-flakey error_writes): copies fail unseen, writes fail" \
	st_dest_write_errors

cor_test_done
