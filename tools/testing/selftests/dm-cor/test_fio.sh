#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_fio.sh: fio randrw with crc32c verification through cor.
#
# fio (libaio, O_DIRECT, iodepth 8, 4 KiB and 64 KiB blocks at 4 KiB
# alignment, so that writes cover whole 32 KiB regions, parts of regions
# and both) reads and writes [2, 12) MiB of a 16 MiB stamped origin through
# cor and verifies what it wrote (crc32c, verify_fatal); it must exit 0.
# fio runs its job as a thread: a kernel without SysV IPC (the debug
# kernel) has no shared memory for a forked job.
# Its I/O log gives the exact set of blocks it wrote, so the whole device
# is checked against a model: every other block, inside fio's range or
# not, must read as the origin, and the dirty bitmap must be exactly the
# regions fio wrote.  After removing and re-creating the device on the same
# metadata the bitmaps are unchanged, fio's verify_only pass re-checks every
# block it wrote and the model holds again.

. "$(dirname "$0")/lib.sh"

cor_test_init
cor_require_cmd fio timeout comm
ktap_plan 4

SEED=$((RANDOM * 32768 + RANDOM))
FIO_SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors: 32 KiB, 8 blocks of 4 KiB
BPR=$((REGION / 8))
FIO_OFF_MB=2			# fio's range: [2 MiB, 12 MiB) of 16 MiB
FIO_SIZE_MB=10
FIO_TIMEOUT=${COR_FIO_TIMEOUT:-150}

cor_setup_devs 16M 16M 256K || cor_bail "cannot create the test devices"
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
TOTAL=$((ORIGIN_SECTORS / REGION))
COR=$(dm_path cor)
JOB=$COR_TMP/cor.fio
IOLOG=$COR_TMP/iolog
WRITTEN=$COR_TMP/written	# blocks fio wrote, one per line, sorted
FIO_FIRST=$((FIO_OFF_MB * 256))	# first and last block of fio's range
FIO_LAST=$(((FIO_OFF_MB + FIO_SIZE_MB) * 256 - 1))
H0=
D0=

cat >"$JOB" <<EOF
[global]
thread
filename=$COR
ioengine=libaio
direct=1
iodepth=8
rw=randrw
rwmixread=50
bssplit=4k/60:64k/40
blockalign=4k
offset=${FIO_OFF_MB}M
size=${FIO_SIZE_MB}M
verify=crc32c
verify_fatal=1
serialize_overlap=1
randseed=$FIO_SEED
[cor]
EOF

cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" || cor_bail "cannot create cor: $COR_LAST_OUTPUT"

# run_fio WHAT [fio options]: the job under a time limit; fails on a
# non-zero exit (fio's status counts the jobs with errors)
run_fio()
{
	local what=$1 out rc

	shift
	out=$(timeout -k 10 "$FIO_TIMEOUT" fio "$JOB" "$@" 2>&1)
	rc=$?
	ktap_diag "$(grep -E '^ *(read|write|READ|WRITE):' <<<"$out")"
	if [ $rc -ne 0 ]; then
		ktap_diag \
			"$(grep -v '^ *lat\|clat\|slat\|percentiles\|^ *|' <<<"$out" | tail -n 30)"
		[ $rc -eq 124 ] && fail "$what: fio did not finish in ${FIO_TIMEOUT}s"
		fail "$what: fio exited $rc"
		return 1
	fi
}

# mismatches_vs_origin FILE: the blocks of cor that do not hold the origin
# pattern, one per line, sorted
mismatches_vs_origin()
{
	"$COR_PATTERN" verify "$COR" 0 all "$SEED" --max-report 1000000 2>&1 |
		sed -n 's/^cor-pattern: .* block \([0-9][0-9]*\) (byte .*/\1/p' | sort -n -u >"$1"
}

# expect_same_blocks WHAT FILE_GOT FILE_WANT
expect_same_blocks()
{
	local extra missing msg

	extra=$(comm -23 "$2" "$3" | head -n 5 | tr '\n' ' ')
	missing=$(comm -13 "$2" "$3" | head -n 5 | tr '\n' ' ')
	[ -z "$extra$missing" ] && return 0
	[ -n "$extra" ] &&
		ktap_diag "$1: blocks not written by fio that differ from the origin: $extra..." \
			"first of them holds: $("$COR_PATTERN" describe "$COR" ${extra%% *} 2>&1)"
	[ -n "$missing" ] &&
		ktap_diag "$1: blocks written by fio that read as the origin: $missing..."
	msg="$1: $(comm -23 "$2" "$3" | wc -l) blocks differ from the origin"
	msg+=" although fio did not write them,"
	msg+=" $(comm -13 "$2" "$3" | wc -l) written blocks read as the origin"
	fail "$msg"
}

st_fio()
{
	local n outside

	run_fio "fio randrw" --write_iolog="$IOLOG" || return
	# fio 3.x logs "[time] file action offset length"
	awk '
		$(NF - 2) == "write" {
			for (o = $(NF - 1); o < $(NF - 1) + $NF; o += 4096)
				print int(o / 4096)
		}' "$IOLOG" | sort -n -u >"$WRITTEN"
	n=$(wc -l <"$WRITTEN")
	ktap_diag \
		"fio wrote $n distinct 4 KiB blocks in $(ranges_count "$(written_regions)") regions"
	expect_cmp "$n" -gt 0 "blocks written by fio" || return
	outside=$(awk -v a="$FIO_FIRST" -v b="$FIO_LAST" '$1 < a || $1 > b' "$WRITTEN" | head -n 1)
	expect_eq "$outside" "" "(test) a block fio wrote outside its range" || return
	wait_status cor hydrating -eq 0 || { fail "copies still in flight"; return 1; }
	expect_eq "$(cor_status_fields cor copies_failed mode)" "0 rw" "copies_failed and mode"
}

# the regions holding a block fio wrote, as ranges
written_regions()
{
	ranges_normalize "$(awk -v bpr="$BPR" '{ print int($1 / bpr) }' "$WRITTEN" |
		sort -n -u | tr '\n' ' ')"
}

st_model()
{
	local out

	[ -s "$WRITTEN" ] || { subtest_skip "fio did not run"; return; }
	# the parts fio never touched, before anything else reads them
	if ! out=$("$COR_PATTERN" verify "$COR" 0 "$FIO_FIRST" "$SEED" --quiet 2>&1); then
		ktap_diag "$out"
		fail "blocks before fio's range differ from the origin"
		return 1
	fi
	if ! out=$("$COR_PATTERN" verify "$COR" $((FIO_LAST + 1)) all "$SEED" --quiet 2>&1); then
		ktap_diag "$out"
		fail "blocks after fio's range differ from the origin"
		return 1
	fi
	# the whole device: exactly the blocks fio wrote are not the origin's
	mismatches_vs_origin "$COR_TMP/mismatch"
	expect_same_blocks "whole device through cor" "$COR_TMP/mismatch" "$WRITTEN"
}

st_bitmaps()
{
	local want

	[ -s "$WRITTEN" ] || { subtest_skip "fio did not run"; return; }
	# the full read of the previous subtest copied every region
	wait_hydrated cor "$TOTAL" 60 ||
		{ fail "the full read did not hydrate every region"; return 1; }
	want=$(written_regions)
	H0=$(cor_bitmap cor hydrated 0 "$TOTAL")
	D0=$(cor_bitmap cor dirty 0 "$TOTAL")
	expect_eq "$D0" "$want" "dirty bitmap vs the regions fio wrote" || return
	expect_eq "$H0" "0-$((TOTAL - 1))" "hydrated bitmap" || return
	expect_eq "$(cor_status_fields cor hydrated dirty copies_failed)" \
		"$TOTAL $(ranges_count "$want") 0" "status hydrated, dirty, copies_failed"
}

st_recreate()
{
	[ -s "$WRITTEN" ] || { subtest_skip "fio did not run"; return; }
	cor_remove cor || return
	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "re-create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "$H0" \
		"hydrated bitmap after re-creation" || return
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "$D0" \
		"dirty bitmap after re-creation" || return
	run_fio "fio verify_only after re-creation" --verify_only=1 || return
	mismatches_vs_origin "$COR_TMP/mismatch2"
	expect_same_blocks "whole device after re-creation" \
		"$COR_TMP/mismatch2" "$WRITTEN" || return
	expect_eq "$(cor_status_fields cor hydrated dirty)" "$TOTAL $(ranges_count "$D0")" \
		"status hydrated and dirty after re-creation"
}

run_subtest "fio randrw with crc32c verification through cor passes" st_fio
run_subtest "blocks fio did not write read as the origin, inside and outside its range" st_model
run_subtest "dirty bitmap is exactly the regions fio wrote" st_bitmaps
run_subtest "after re-creation the bitmaps are unchanged and fio verify_only passes" st_recreate

cor_test_done
