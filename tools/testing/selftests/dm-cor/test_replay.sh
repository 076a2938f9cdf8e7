#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_replay.sh: model-checked crash-consistency replay.
#
# Destination and metadata are dm-linear slices of ONE dm-log-writes device,
# so one log records the writes to both in a single order (the order in
# which they reached stable storage, as far as flushes tell).  The origin is
# a separate slice stamped with the cor-pattern pattern (version 0).
#
# 1. cor-replay run drives a mixed workload through the cor device: two
#    writer threads write pattern versions 1, 2, ... (whole regions, parts
#    of regions, of cold and of hydrated regions), some with O_DSYNC (FUA),
#    discard blocks and fdatasync (FLUSH); a reader thread reads, mostly in
#    a window that sweeps the device, so that cold regions are copied on
#    read all along.  Every operation takes a ticket from a global counter
#    when issued and when it returns; after each flush and FUA write returns
#    the log gets a mark (crm<id>).  The model lists every block written or
#    discarded and every mark, with their tickets.
# 2. cor-replay replay applies the log entry by entry to a zeroed replay
#    device (an in-memory image, written to the device when something needs
#    to read it) and checks the state after EVERY FLUSH and FUA entry, about
#    $RANDOM_POINTS random entries in between and the last entry, from the
#    mark "setup" (the cor device exists) on.  At each point:
#    - the replayed metadata loads the way the kernel loads it, and
#      cor_check exits 0 on the replayed metadata slice (run at every point
#      where the metadata changed since its last run: same bytes, same
#      verdict);
#    - every block of the cor device as it would present it (destination
#      block if its region is hydrated, else the origin pattern) is one the
#      model allows: writes that returned before a flush or FUA write was
#      issued, once that flush's mark is in the replayed prefix (and the
#      FUA write itself), read back exactly or as a later version issued
#      before this point; with none, the origin pattern or such a version;
#      never zeroes or data nobody wrote (discarded blocks may read as
#      zeroes); blocks never written show the origin.  All blocks are
#      checked at all points: the image is classified once per write, so a
#      point costs one pass over small arrays;
#    - at every Kth point (K chosen so that $LOADS points load) and at the
#      last point, the cor device is created on the replayed destination
#      and metadata slices and the original origin, and the blocks read
#      from it (every block of the hydrated regions, one block of 16
#      unhydrated regions: a cold read copies its region, which is slow
#      under TCG) must be what the replayed state presents.  A cor table,
#      even a read-only one, writes (copies of cold regions it reads,
#      commits): it is loaded read-only over two non-persistent
#      dm-snapshots of the replayed slices, so those writes go to the
#      snapshots' COW devices and the replay device stays exactly the
#      replayed state; the snapshots are dropped afterwards.
#    dm-log-writes logs a FUA write when it completes, a plain write only
#    at the next flush, so a log with FUA writes need not be in completion
#    order.  cor passes no FUA write down (it completes FUA writes after a
#    commit, which flushes), so the replay is strict and a FUA write in
#    the destination is itself a violation (subtest 4 shows why).
# 3. The same replay with a fault injected (--inject-drop-batch 3: the
#    destination writes logged between the 2nd and 3rd durability marks
#    (or the next two with any destination write between them),
#    i.e. what one flush or FUA write made durable, are not applied) must
#    report a violation at once, and the cor device loaded on that state
#    must show it too: the checks can fail.
#
# Cost under TCG: cor_check is a fork and exec per metadata change (about
# 0.2 s), a load about 5 s; the block checks are cheap.
#
# Tunables: COR_REPLAY_WRITES (default 3000), COR_REPLAY_LOADS (10),
# COR_REPLAY_RANDOM (150).

. "$(dirname "$0")/lib.sh"

COR_REPLAY=${COR_REPLAY:-$COR_SELFTEST_DIR/cor-replay}
COR_FSREPLAY=${COR_FSREPLAY:-$COR_SELFTEST_DIR/cor-fsreplay}
WRITES=${COR_REPLAY_WRITES:-3000}
LOADS=${COR_REPLAY_LOADS:-10}
RANDOM_POINTS=${COR_REPLAY_RANDOM:-150}

cor_test_init
[ -x "$COR_REPLAY" ] || ktap_skip_all "cor-replay not built (make -C $COR_SELFTEST_DIR)"
COR_CHECK=$(cor_tool cor_check)
[ -n "$COR_CHECK" ] || ktap_skip_all "cor_check not built (make tools)"
cor_require_targets log-writes snapshot
ktap_plan 4

SEED=$((RANDOM * 32768 + RANDOM))
REGION=64				# sectors (32 KiB)
DEST_SECT=32768				# 16 MiB: 4096 blocks, 512 regions
META_SECT=2048
LW_SECT=$((DEST_SECT + META_SECT))
BLOCKS=$((DEST_SECT / 8))
LW=$(dm_name lw)
RCOR=$(dm_name rcor)
OUT=$COR_TMP/replay.out
HOOK=$COR_TMP/hook.sh

# the replay's output: its summary and the first violations as diagnostics
show_output()
{
	local re='^cor-replay: (log|checking|checked|cor_check|time|[0-9]+ (viol|FUA)'

	re+='|point|INJECTED|\(the)'
	ktap_diag "$(grep -E "$re" "$1")"
	ktap_diag "$(grep -E 'VIOLATION|FAILED|error|cannot|failed' "$1" | head -n "${2:-12}")"
}

st_workload()
{
	local out n t0=$SECONDS

	slice_create lwdata 0 $((LW_SECT / 2048))M && slice_create lwlog 1 700M &&
	slice_create origin 2 $((DEST_SECT / 2048))M &&
	slice_create cowd 2 24M && slice_create cowm 2 4M &&
	slice_create replay 3 $((LW_SECT / 2048))M || return
	ORIGIN=$(dm_path origin)
	# the logged device and the replay device both start as zeroes
	zero_dev "$(dm_path lwdata)" && zero_dev "$(dm_path replay)" ||
		{ fail "cannot zero the data and replay slices"; return 1; }
	stamp_origin "$SEED" "$ORIGIN" || return
	ktap_diag "slices zeroed, origin stamped: $((SECONDS - t0))s"
	dm_create lw "0 $LW_SECT log-writes $(dm_path lwdata) $(dm_path lwlog)" ||
		{ fail "cannot create the log-writes device: $COR_LAST_OUTPUT"; return 1; }
	dm_create dest "0 $DEST_SECT linear $(dm_path lw) 0" &&
	dm_create meta "0 $META_SECT linear $(dm_path lw) $DEST_SECT" ||
		{ fail "cannot slice the log-writes device: $COR_LAST_OUTPUT"; return 1; }
	cor_create cor "$ORIGIN" "$(dm_path dest)" "$(dm_path meta)" "$REGION" ||
		{ fail "cannot create the cor device: $COR_LAST_OUTPUT"; return 1; }
	# its metadata is checked at every replay point instead
	cor_skip_meta_check "$(dm_path meta)" "checked by cor_check at every replay point"
	out=$(dmsetup message "$LW" 0 mark setup 2>&1) || { fail "mark setup: $out"; return 1; }
	expect_ok "workload" "$COR_REPLAY" run "$(dm_path cor)" --blocks "$BLOCKS" --seed "$SEED" \
		--mark-dev "$LW" --model-out "$COR_TMP/model" --writes "$WRITES" \
		--rng-seed "$SEED" || return
	ktap_diag "$COR_EXPECT_OUT"
	ktap_diag "workload done: $((SECONDS - t0))s"
	cor_remove cor || return
	ktap_diag "log-writes status: $(dmsetup status "$LW")"
	n=$(cor_klog_since | grep -cE 'log-writes|Ran out of space|Error alloc')
	expect_eq "$n" 0 "log-writes errors in the kernel log" || return
	# removing the log device writes its final superblock
	dm_remove dest && dm_remove meta && dm_remove lw ||
		{ fail "cannot remove the logged devices: $COR_LAST_OUTPUT"; return 1; }
	dm_create rdest "0 $DEST_SECT linear $(dm_path replay) 0" &&
	dm_create rmeta "0 $META_SECT linear $(dm_path replay) $DEST_SECT" ||
		{ fail "cannot slice the replay device: $COR_LAST_OUTPUT"; return 1; }
	write_hook
}

# The hook cor-replay runs to load ("load P") and remove ("unload P") the
# cor device on the replayed state: read-only, over non-persistent
# snapshots of the replayed slices, so that nothing it writes (copies,
# commits) reaches the replay device.
write_hook()
{
	local sd sm

	sd=$(dm_name rsnapd) sm=$(dm_name rsnapm)
	cat >"$HOOK" <<EOF
# generated by test_replay.sh
rm_dev()
{
	local i

	for i in 1 2 3 4 5 6 7 8 9 10; do
		dmsetup remove "\$1" >/dev/null 2>&1 && return 0
		dmsetup info "\$1" >/dev/null 2>&1 || return 0
		sleep 0.2
	done
	dmsetup remove "\$1"
}

case "\$1" in
load)
	dmsetup create $sd --table "0 $DEST_SECT snapshot $(dm_path rdest) $(dm_path cowd) N 8" &&
	dmsetup create $sm --table "0 $META_SECT snapshot $(dm_path rmeta) $(dm_path cowm) N 8" &&
	dmsetup create --readonly $RCOR --table \\
		"0 $DEST_SECT cor $ORIGIN /dev/mapper/$sd /dev/mapper/$sm $REGION" && exit 0
	echo "hook: load at point \$2 failed: \$(dmesg | grep -E 'device-mapper: ' | tail -n 2)"
	exit 1
	;;
unload)
	rc=0
	for d in $RCOR $sm $sd; do
		dmsetup info "\$d" >/dev/null 2>&1 || continue
		rm_dev "\$d" || rc=1
	done
	exit \$rc
	;;
esac
exit 2
EOF
}

replay()
{
	"$COR_REPLAY" replay --log "$(dm_path lwlog)" --replay "$(dm_path replay)" \
		--model "$COR_TMP/model" --meta-offset "$DEST_SECT" --meta-sectors "$META_SECT" \
		--region-sectors "$REGION" --start-mark setup --cor-check "$COR_CHECK" \
		--meta-dev "$(dm_path rmeta)" --hook "bash $HOOK" --cor-dev "/dev/mapper/$RCOR" \
		--rng-seed "$SEED" "$@"
}

st_replay()
{
	local rc

	[ -f "$HOOK" ] || { fail "no workload to replay"; return 1; }
	replay --loads "$LOADS" --random "$RANDOM_POINTS" --progress >"$OUT" 2>&1
	rc=$?
	show_output "$OUT" 30
	expect_eq "$rc" 0 "cor-replay exit status (0 no violation, 1 violation, 2 error)" ||
		return
	grep -q '^cor-replay: checked' "$OUT" || fail "cor-replay printed no summary"
}

# The checks can fail: drop the destination writes of one flushed batch
# (what the 3rd durability mark made durable) and a violation must be
# found at once, and confirmed by the cor device loaded on that state.
st_inject()
{
	local rc

	[ -f "$HOOK" ] || { fail "no workload to replay"; return 1; }
	# a new zeroed replay device: the first replay left its final state
	zero_dev "$(dm_path replay)" || { fail "cannot zero the replay device"; return 1; }
	replay --inject-drop-batch 3 --loads 0 --random 0 --max-violations 1 >"$OUT" 2>&1
	rc=$?
	show_output "$OUT" 8
	expect_eq "$rc" 1 "cor-replay exit status with a dropped flush batch" || return
	grep -q 'INJECTED FAULT' "$OUT" && grep -q 'VIOLATION' "$OUT" ||
		fail "no violation reported for the injected fault"
}

# The pattern behind a lost ext4 group descriptor (test_fsreplay.sh): a
# FUA write to a cold region waits for the copy of its region, a plain
# write; dm-log-writes logs a FUA write when it completes but a plain one
# only at the next flush, so if the FUA write reached the destination as
# FUA, the log held it BEFORE the copy and a replay put the origin's data
# over it.  cor passes FUA writes down as plain writes (it completes them
# after a commit, which flushes): the log holds no FUA entry, and at every
# point after the write returned the replayed cor device reads its data.
st_fua_after_copy()
{
	local hook2=$COR_TMP/hook2.sh block=$((10 * REGION / 8 + 2)) out rc n wc

	[ -f "$HOOK" ] && [ -x "$COR_FSREPLAY" ] ||
		{ fail "no workload run, or no cor-fsreplay"; return 1; }
	zero_dev "$(dm_path lwdata)" && zero_dev "$(dm_path replay)" ||
		{ fail "cannot zero the data and replay slices"; return 1; }
	head -c 4096 /dev/urandom >"$COR_TMP/fua-block"
	dm_create lw "0 $LW_SECT log-writes $(dm_path lwdata) $(dm_path lwlog)" &&
	dm_create dest "0 $DEST_SECT linear $(dm_path lw) 0" &&
	dm_create meta "0 $META_SECT linear $(dm_path lw) $DEST_SECT" ||
		{ fail "cannot create the logged devices: $COR_LAST_OUTPUT"; return 1; }
	cor_create cor "$ORIGIN" "$(dm_path dest)" "$(dm_path meta)" "$REGION" ||
		{ fail "cannot create the cor device: $COR_LAST_OUTPUT"; return 1; }
	# without a write-back cache the block layer drops REQ_FUA above cor
	wc=$(cat "/sys/dev/block/$(dm_majmin cor)/queue/write_cache" 2>/dev/null)
	expect_eq "$wc" "write back" "the cor device's write cache (FUA reaches the target)" ||
		return
	out=$(dmsetup message "$LW" 0 mark setup 2>&1) || { fail "mark setup: $out"; return 1; }
	# one block in the middle of a cold region, O_DIRECT | O_DSYNC: REQ_FUA
	dd if="$COR_TMP/fua-block" of="$(dm_path cor)" bs=4096 seek="$block" \
		oflag=direct,dsync conv=notrunc status=none ||
		{ fail "the FUA write failed"; return 1; }
	out=$(dmsetup message "$LW" 0 mark acked 2>&1) || { fail "mark acked: $out"; return 1; }
	cor_remove cor && dm_remove dest && dm_remove meta && dm_remove lw ||
		{ fail "cannot remove the logged devices: $COR_LAST_OUTPUT"; return 1; }
	cat >"$hook2" <<EOF
# generated by test_replay.sh: at every point after "acked", the block reads back
grep -qx acked "$COR_TMP/marks" || exit 0
bash "$HOOK" load "\$2" || exit 2
dd if="/dev/mapper/$RCOR" bs=4096 skip=$block count=1 iflag=direct status=none |
	cmp -s - "$COR_TMP/fua-block"
rc=\$?
bash "$HOOK" unload "\$2" || exit 2
[ \$rc -eq 0 ] && exit 0
echo "point \$2 (entry \$3, \$4): block $block does not hold the FUA write's data"
exit 1
EOF
	out=$("$COR_FSREPLAY" replay --log "$(dm_path lwlog)" --replay "$(dm_path replay)" \
		--hook "bash $hook2" --start-mark setup --points 0 \
		--marks-out "$COR_TMP/marks" 2>&1)
	rc=$?
	ktap_diag "$out"
	expect_eq "$rc" 0 "replay: the FUA write's data at every point after it returned" || return
	n=$(sed -n 's/^cor-fsreplay: checked .* \([0-9]*\) FUA entries.*/\1/p' <<<"$out")
	expect_eq "${n:-?}" 0 "FUA entries in the log" || return
	expect_eq "$(grep -cxE 'setup|acked' "$COR_TMP/marks")" 2 "marks replayed (setup, acked)"
}

run_subtest "mixed workload through cor on one dm-log-writes device" st_workload
run_subtest "replay: every FLUSH/FUA point and random ones are consistent" st_replay
run_subtest "replay with an injected lost flush batch reports a violation" st_inject
run_subtest "a FUA write after its region's copy: logged in order, replayed intact" \
	st_fua_after_copy

cor_test_done
