#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_reload.sh: table reloads, re-creation and refused metadata.
#
# One cor device (32 KiB regions) over a stamped origin, checked against a
# model file (the origin image overlaid with every write):
#
#   - a reload of the same table (load + resume) right after writes, before
#     the periodic commit has covered them, keeps the bitmaps, the status
#     counts and the data, and the new table's counters start at 0;
#   - a reload or a create with another region size or length on existing
#     metadata is refused with the reason in the kernel log, leaves no
#     inactive table and does not touch the metadata; the live device keeps
#     its status and keeps working;
#   - a second dm device naming the metadata device in use is refused;
#   - remove + re-create keeps the bitmaps (bit for bit) and the counts,
#     even for writes issued just before the removal;
#   - suspend/resume and reloads of the same table while fio writes (with
#     crc32c verification) and reads through the device: fio passes, its
#     verify_only pass passes, and the whole device matches the model;
#   - metadata that is neither zeroed nor dm-cor metadata (random bytes) is
#     refused, for a create and for a reload, and is not modified.
#
# The 16 MiB device is split into zones: [0, 4 MiB) for the model's own
# writes, [4, 8 MiB) fio's writer, [8, 12 MiB) fio's reader, the rest only
# read.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_model.sh"

cor_test_init
cor_require_cmd fio timeout comm
ktap_plan 6

# a test killed while fio runs in the background stops fio before the
# epilogue removes the devices
FIO_PID=
stop_fio()
{
	[ -n "$FIO_PID" ] || return 0
	kill "$FIO_PID" 2>/dev/null
	wait "$FIO_PID" 2>/dev/null
	FIO_PID=
}
trap 'rc=$?; stop_fio; (exit $rc); cor_epilogue' EXIT

SEED=$((RANDOM * 32768 + RANDOM))
FIO_SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors (32 KiB)
BPR=$((REGION / 8))		# 4 KiB blocks per region
FIO_TIMEOUT=${COR_FIO_TIMEOUT:-120}

cor_setup_devs 16M 16M 256K || cor_bail "cannot create the test devices"
slice_create dest2 1 16M || cor_bail "cannot create a second destination"
slice_create badmeta 2 64K || cor_bail "cannot create a second metadata device"
DEST2=$(dm_path dest2)
BADMETA=$(dm_path badmeta)
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
TOTAL=$((ORIGIN_SECTORS / REGION))
COR=$(dm_path cor)
NAME=$(dm_name cor)
MODEL=$COR_TMP/model
DATA=$COR_TMP/data
"$COR_PATTERN" gen 0 "$ORIGIN_BLOCKS" "$SEED" >"$MODEL" || cor_bail "cannot build the model"
"$COR_PATTERN" gen 0 256 $((SEED + 1)) --pattern-version 1 >"$DATA" ||
	cor_bail "cannot build the data"
DATA_CUR=0			# next unused sector of $DATA
READ_SET=
WRITE_SET=


########################################################################
# helpers (few processes: each one is slow in the test VM)

# write_io SECTOR COUNT: one O_DIRECT write of fresh data, also to the model
write_io()
{
	[ $((DATA_CUR + $2)) -le 2048 ] || DATA_CUR=0
	dd_write "$DATA" "$DATA_CUR" "$COR" "$1" "$2" ||
		{ fail "write of sectors $1+$2 failed"; return 1; }
	model_write "$MODEL" "$DATA" "$DATA_CUR" "$1" "$2"
	DATA_CUR=$((DATA_CUR + $2))
	WRITE_SET="$WRITE_SET $(regions_of "$1" "$2" "$REGION")"
}

# read_io SECTOR COUNT: one O_DIRECT read, checked against the model
read_io()
{
	expect_dev_matches_file "read of sectors $1+$2" "$COR" "$1" "$2" "$MODEL" || return
	READ_SET="$READ_SET $(regions_of "$1" "$2" "$REGION")"
}

# check_span SECTOR COUNT WHAT: the whole regions around an I/O vs the model
check_span()
{
	local a=$(($1 / REGION)) b=$((($1 + $2 - 1) / REGION))

	expect_dev_matches_file "$3" "$COR" $((a * REGION)) $(((b - a + 1) * REGION)) "$MODEL"
}

want_hydrated() { ranges norm "$BASELINE $READ_SET $WRITE_SET"; }
want_dirty() { ranges norm "$WRITE_SET"; }

# expect_bitmaps WHAT: the bitmaps and the status counts are the model's
expect_bitmaps()
{
	local h d

	h=$(cor_bitmap cor hydrated 0 "$TOTAL") || { fail "$1: bitmap message failed"; return 1; }
	d=$(cor_bitmap cor dirty 0 "$TOTAL") || { fail "$1: bitmap message failed"; return 1; }
	expect_eq "$h" "$(want_hydrated)" "$1: hydrated bitmap" || return
	expect_eq "$d" "$(want_dirty)" "$1: dirty bitmap" || return
	st_read cor || { fail "$1: no status"; return 1; }
	expect_eq "$ST_HYDRATED $ST_DIRTY $ST_MODE" "$(count_of "$h") $(count_of "$d") rw" \
		"$1: status hydrated, dirty, mode"
}

# expect_refused WHAT REASON cmd...: the command fails and the kernel log
# names REASON
expect_refused()
{
	local what=$1 reason=$2 out rc last

	shift 2
	out=$("$@" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		fail "$what: '$*' succeeded but must be refused"
		return 1
	fi
	if ! cor_klog_since | grep -E 'device-mapper: table: .*: cor: ' | tail -n 1 |
	     grep -qF "$reason"; then
		last=$(cor_klog_since | grep ': cor: ' | tail -n 1)
		fail "$what: kernel log does not say '$reason': $last"
		return 1
	fi
}

# expect_no_inactive WHAT: the live device has no inactive table left
expect_no_inactive()
{
	dmsetup info "$NAME" | grep -q 'Tables present: *LIVE$' ||
		fail "$1: $(dmsetup info "$NAME" | grep 'Tables present')"
}

dev_sum() { dd if="$1" bs=1M iflag=direct status=none | sha256sum | awk '{ print $1 }'; }

table_with()	# table_with REGION LEN [META]
{
	cor_table --len "$2" "$ORIGIN" "$DEST" "${3:-$META}" "$1"
}

########################################################################
# subtests

cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" || cor_bail "cannot create cor: $COR_LAST_OUTPUT"
# the kernel may have probed the first sectors when the device appeared
wait_idle cor || cor_bail "copies in flight on a new device"
BASELINE=$(cor_bitmap cor hydrated 0 "$TOTAL")

st_reload_same()
{
	local t0 i

	t0=$(dmsetup table "$NAME")
	read_io $((40 * REGION)) $((4 * REGION)) || return	# regions 40-43
	read_io $((50 * REGION + 3)) 9 || return		# part of region 50
	wait_idle cor || return
	# writes, then at once (no flush, nothing in between: the periodic
	# commit, once a second, has most likely not covered them yet) a
	# reload, twice; the new table must carry the in-core state over
	for i in 0 1; do
		# part of region 10 / 11
		write_io $(((10 + i) * REGION + 5)) 7 || return
		# regions 20-21 / 22-23
		write_io $(((20 + 2 * i) * REGION)) $((2 * REGION)) || return
		# 30-31 / 32-33, partly
		write_io $(((30 + 2 * i) * REGION + 30)) 100 || return
		if ! dmsetup load "$NAME" --table "$t0" >/dev/null 2>&1 ||
		   ! dmsetup resume "$NAME" >/dev/null 2>&1; then
			fail "reload $i of the same table failed"
			return 1
		fi
		expect_bitmaps "after reload $i" || return
	done
	expect_eq "$(dmsetup table "$NAME")" "$t0" "table after the reloads" || return
	expect_eq "$(cor_status_fields cor origin_read_sectors copies_done)" "0 0" \
		"counters of the new table" || return
	# regions 10..50 in one read: the written, the read and the untouched
	expect_dev_matches_file "regions 10-50 after the reloads" "$COR" $((10 * REGION)) \
		$((41 * REGION)) "$MODEL" || return
	READ_SET="$READ_SET 10-50"
	wait_idle cor || return
	expect_bitmaps "after reading regions 10-50"
}

st_reload_mismatch()
{
	local st0 t0 sum0 h0 d0

	st0=$(cor_status "$NAME")
	t0=$(dmsetup table "$NAME")
	expect_refused "reload with 64 KiB regions" "Region size differs from the metadata" \
		dmsetup load "$NAME" \
		--table "$(table_with $((REGION * 2)) "$ORIGIN_SECTORS")" || return
	expect_refused "reload with 16 KiB regions" "Region size differs from the metadata" \
		dmsetup load "$NAME" \
		--table "$(table_with $((REGION / 2)) "$ORIGIN_SECTORS")" || return
	expect_refused "reload one region shorter" "Device length differs from the metadata" \
		dmsetup load "$NAME" \
		--table "$(table_with "$REGION" $((ORIGIN_SECTORS - REGION)))" || return
	expect_no_inactive "after the refused reloads" || return
	expect_ok "resume after the refused reloads" dmsetup resume "$NAME" || return
	expect_eq "$(cor_status "$NAME")" "$st0" "status after the refused reloads" || return
	expect_eq "$(dmsetup table "$NAME")" "$t0" "table after the refused reloads" || return
	# the live device still works
	write_io $((60 * REGION + 20)) 5 || return		# part of region 60
	write_io $((70 * REGION)) "$REGION" || return		# region 70 whole
	check_span $((60 * REGION)) 1 "region 60 after the refused reloads" &&
	check_span $((70 * REGION)) 1 "region 70 after the refused reloads" || return
	expect_bitmaps "after the refused reloads" || return

	# the same with the metadata at rest
	h0=$(cor_bitmap cor hydrated 0 "$TOTAL")
	d0=$(cor_bitmap cor dirty 0 "$TOTAL")
	cor_remove cor || return
	sum0=$(dev_sum "$META")
	expect_refused "create with 64 KiB regions" "Region size differs from the metadata" \
		dmsetup create "$NAME" \
		--table "$(table_with $((REGION * 2)) "$ORIGIN_SECTORS")" || return
	expect_refused "create one region shorter" "Device length differs from the metadata" \
		dmsetup create "$NAME" \
		--table "$(table_with "$REGION" $((ORIGIN_SECTORS - REGION)))" || return
	dm_exists cor && { fail "a refused create left the device"; return 1; }
	expect_eq "$(dev_sum "$META")" "$sum0" \
		"metadata checksum after the refused creates" || return
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "re-create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "$h0" \
		"hydrated bitmap after re-creation" || return
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "$d0" "dirty bitmap after re-creation"
}

st_second_device()
{
	local st0 sum0

	st0=$(cor_status "$NAME")
	expect_refused "second device on the same metadata" \
		"Metadata device is in use by another dm-cor device" \
		dmsetup create "$(dm_name cor2)" \
		--table "$(cor_table "$ORIGIN" "$DEST2" "$META" "$REGION")" ||
		return
	expect_refused "read-only second device on the same metadata" \
		"Metadata device is in use by another dm-cor device" \
		dmsetup create --readonly "$(dm_name cor2)" \
		--table "$(cor_table "$ORIGIN" "$DEST2" "$META" "$REGION")" || return
	expect_refused "second device with another region size" \
		"Metadata device is in use by another dm-cor device" \
		dmsetup create "$(dm_name cor2)" \
		--table "$(cor_table "$ORIGIN" "$DEST2" "$META" $((REGION * 2)))" || return
	dm_exists cor2 && { fail "a refused create left cor2"; return 1; }
	expect_eq "$(cor_status "$NAME")" "$st0" "status of the first device" || return
	write_io $((80 * REGION + 40)) 9 || return		# part of region 80
	check_span $((80 * REGION)) 1 "region 80 after the refused second device" || return
	expect_bitmaps "after the refused second device"
}

st_recreate()
{
	local h0 d0 st0

	write_io $((90 * REGION)) 100 || return		# 90 whole, part of 91
	write_io $((95 * REGION + 63)) 1 || return		# last sector of 95
	# removed at once: the removal must commit what the writes changed
	h0=$(cor_bitmap cor hydrated 0 "$TOTAL")
	d0=$(cor_bitmap cor dirty 0 "$TOTAL")
	st0=$(cor_status_fields cor hydrated dirty)
	cor_remove cor || return
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "re-create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "$h0" \
		"hydrated bitmap after re-creation" || return
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "$d0" \
		"dirty bitmap after re-creation" || return
	expect_eq "$(cor_status_fields cor hydrated dirty)" "$st0" \
		"status counts after re-creation" || return
	expect_bitmaps "after re-creation" || return
	# the whole model zone (this read hydrates all of it)
	expect_dev_matches_file "model zone after re-creation" \
		"$COR" 0 $((128 * REGION)) "$MODEL" || return
	READ_SET="$READ_SET 0-127"
	wait_idle cor || return
	expect_bitmaps "after reading the model zone"
}

# wait_write_progress DEV SECTORS TIMEOUT: poll until DEV has written
# SECTORS more sectors (or fio ended); 0 when it did
wait_write_progress()
{
	local w0 end=$((SECONDS + $3))

	w0=$(dev_write_sectors "$1")
	while [ $SECONDS -lt $end ]; do
		[ $(($(dev_write_sectors "$1") - w0)) -ge "$2" ] && return 0
		kill -0 "$FIO_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

st_suspend_under_fio()
{
	local job=$COR_TMP/reload.fio iolog=$COR_TMP/iolog written=$COR_TMP/written
	local t cycles=0 i rc end out extra missing msg t0 ms secs

	# What one cycle costs here with no I/O (4 dmsetup calls: 0.25-0.7 s
	# on a stock kernel, 0.74 s on the debug one) sets how long the writer
	# runs: 40 idle cycles, 16 s at least.  Under fio a cycle costs far
	# more: the debug kernel fitted only 2 or 3 in 16 s of writes.
	t=$(dmsetup table "$NAME")
	t0=$(date +%s%N)
	{ dmsetup suspend "$NAME" && dmsetup resume "$NAME" &&
	  dmsetup load "$NAME" --table "$t" && dmsetup resume "$NAME"; } ||
		{ fail "idle suspend/reload cycle failed"; return 1; }
	ms=$((($(date +%s%N) - t0) / 1000000))
	secs=$(((40 * ms + 999) / 1000))
	[ "$secs" -ge 16 ] || secs=16
	[ "$secs" -le $((FIO_TIMEOUT / 2)) ] || secs=$((FIO_TIMEOUT / 2))
	ktap_diag "idle cycle: $ms ms; the writer runs for ~$secs s"

	cat >"$job" <<EOF
[global]
thread
filename=$COR
ioengine=libaio
direct=1
iodepth=8
bssplit=4k/60:64k/40
blockalign=4k
randseed=$FIO_SEED
[writer]
rw=randwrite
offset=4M
size=4M
rate=,$((4096 / secs))k
verify=crc32c
verify_fatal=1
serialize_overlap=1
write_iolog=$iolog
[reader]
rw=randread
offset=8M
size=4M
rate=2m
time_based=1
runtime=8
EOF
	timeout -k 10 "$FIO_TIMEOUT" fio "$job" >"$COR_TMP/fio.out" 2>&1 &
	FIO_PID=$!
	# suspend/resume, then reload the same table, each time after fio has
	# written again; a flush suspend and a noflush one in turn
	for ((i = 0; i < 6; i++)); do
		wait_write_progress "$COR" 128 30 || break
		if [ $((i % 2)) -eq 0 ]; then
			dmsetup suspend "$NAME" || fail "suspend under fio failed"
		else
			dmsetup suspend --noflush "$NAME" || fail "noflush suspend under fio failed"
		fi
		dmsetup resume "$NAME" || fail "resume under fio failed"
		dmsetup load "$NAME" --table "$t" || fail "load of the same table under fio failed"
		dmsetup resume "$NAME" || fail "resume of the reloaded table under fio failed"
		[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || break
		cycles=$((cycles + 1))
	done
	# fio stops by itself (size and time bound); the timeout kills it
	wait "$FIO_PID"
	rc=$?
	FIO_PID=
	ktap_diag "$cycles suspend/resume + reload cycles under fio" \
		"$(grep -E '^ *(read|write):|err=' "$COR_TMP/fio.out")"
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1
	if [ $rc -ne 0 ]; then
		ktap_diag "$(grep -v 'lat\|percentiles\|^ *|' "$COR_TMP/fio.out" | tail -n 30)"
		fail "fio under suspend/reload exited $rc"
		return 1
	fi
	expect_cmp "$cycles" -ge 3 "cycles done while fio ran" || return
	expect_eq "$(dmsetup table "$NAME")" "$t" "table after the cycles" || return
	wait_idle cor || return

	# what fio wrote verifies again, and nothing else changed
	sed -i '/^write_iolog=/d' "$job"
	if ! out=$(timeout -k 10 "$FIO_TIMEOUT" fio "$job" --section=writer \
			--verify_only=1 2>&1); then
		ktap_diag "$(tail -n 20 <<<"$out")"
		fail "fio verify_only after the cycles failed"
		return 1
	fi
	awk '
		$(NF - 2) == "write" {
			for (o = $(NF - 1); o < $(NF - 1) + $NF; o += 4096)
				print int(o / 4096)
		}' "$iolog" | sort -n -u >"$written"
	[ -s "$written" ] || { fail "fio's log has no writes"; return 1; }
	"$COR_PATTERN" verify "$COR" 1024 1024 "$SEED" --max-report 1000000 2>&1 |
		sed -n 's/^cor-pattern: .* block \([0-9][0-9]*\) (byte .*/\1/p' |
			sort -n -u >"$COR_TMP/mismatch"
	extra=$(comm -23 "$COR_TMP/mismatch" "$written" | wc -l)
	missing=$(comm -13 "$COR_TMP/mismatch" "$written" | wc -l)
	if [ "$extra$missing" != 00 ]; then
		msg="fio's zone: $extra blocks fio did not write differ from the origin"
		msg+=" (first: $(comm -23 "$COR_TMP/mismatch" "$written" | head -n 1)),"
		msg+=" $missing written blocks read as the origin"
		fail "$msg"
		return 1
	fi
	if ! out=$("$COR_PATTERN" verify "$COR" 2048 all "$SEED" --quiet 2>&1); then
		ktap_diag "$out"
		fail "fio's read zone or the rest differ from the origin"
		return 1
	fi
	expect_dev_matches_file "model zone after the cycles" \
		"$COR" 0 $((128 * REGION)) "$MODEL" || return
	# every region is hydrated now; dirty: the model's writes and fio's
	WRITE_SET="$WRITE_SET $(awk -v bpr="$BPR" '{ print int($1 / bpr) }' "$written" |
		sort -n -u | tr '\n' ' ')"
	READ_SET="0-$((TOTAL - 1))"
	wait_idle cor || return
	expect_bitmaps "after the cycles" || return
	expect_eq "$ST_COPIES_FAILED" 0 "copies_failed"
}

st_random_metadata()
{
	local sum0 st0 t0

	dd if=/dev/urandom of="$BADMETA" bs=64K count=1 oflag=direct status=none ||
		{ fail "cannot fill $BADMETA"; return 1; }
	sum0=$(dev_sum "$BADMETA")
	expect_refused "create on random metadata" \
		"Metadata device is neither zeroed nor valid dm-cor metadata" \
		dmsetup create "$(dm_name cor3)" \
		--table "$(cor_table "$ORIGIN" "$DEST2" "$BADMETA" "$REGION")" ||
		return
	expect_refused "read-only create on random metadata" \
		"Metadata device is neither zeroed nor valid dm-cor metadata" \
		dmsetup create --readonly "$(dm_name cor3)" \
		--table "$(cor_table "$ORIGIN" "$DEST2" "$BADMETA" "$REGION")" || return
	dm_exists cor3 && { fail "a refused create left cor3"; return 1; }
	expect_eq "$(dev_sum "$BADMETA")" "$sum0" \
		"random metadata checksum after the refused creates" ||
		return
	# a reload of the live device onto it is refused too
	st0=$(cor_status "$NAME")
	t0=$(dmsetup table "$NAME")
	expect_refused "reload onto random metadata" \
		"Metadata device is neither zeroed nor valid dm-cor metadata" \
		dmsetup load "$NAME" \
		--table "$(table_with "$REGION" "$ORIGIN_SECTORS" "$BADMETA")" || return
	expect_no_inactive "after the refused reload" || return
	expect_eq "$(cor_status "$NAME")" "$st0" "status after the refused reload" || return
	expect_eq "$(dmsetup table "$NAME")" "$t0" "table after the refused reload" || return
	# one superblock slot zeroed, the other random: still not formatted
	dd if=/dev/zero of="$BADMETA" bs=4096 count=1 oflag=direct conv=notrunc status=none ||
		{ fail "cannot zero the first block of $BADMETA"; return 1; }
	sum0=$(dev_sum "$BADMETA")
	expect_refused "create on metadata with one superblock slot zeroed" \
		"Metadata device is neither zeroed nor valid dm-cor metadata" \
		dmsetup create "$(dm_name cor3)" \
		--table "$(cor_table "$ORIGIN" "$DEST2" "$BADMETA" "$REGION")" ||
		return
	dm_exists cor3 && { fail "a refused create left cor3"; return 1; }
	expect_eq "$(dev_sum "$BADMETA")" "$sum0" \
		"metadata checksum after the refused create" || return
	write_io $((100 * REGION + 1)) 3 || return
	check_span $((100 * REGION)) 1 "region 100 after the refused metadata"
}

run_subtest "reload of the same table keeps uncommitted bitmaps, counts and data" st_reload_same
run_subtest "another region size or length is refused, live or at rest; the device keeps working" \
	st_reload_mismatch
run_subtest "a second dm device on metadata in use is refused" st_second_device
run_subtest "remove + re-create keeps bitmaps and counts of writes just issued" st_recreate
run_subtest "suspend/resume and reloads under fio: fio and the model verify" st_suspend_under_fio
run_subtest "random bytes as metadata are refused and left unmodified" st_random_metadata

cor_test_done
