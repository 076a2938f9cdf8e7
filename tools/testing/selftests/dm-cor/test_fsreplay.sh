#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_fsreplay.sh: filesystem crash consistency on top of dm-cor, the way
# xfstests generic/482 tests filesystems.
#
# The origin holds a populated ext4 (then xfs) filesystem.  The cor device
# (64 KiB regions) has its destination and metadata on two dm-linear
# slices of ONE dm-log-writes device, so one log orders the writes to both.
# The filesystem is mounted on it with -o discard (the mount's reads copy
# what they touch first, as under a booting system), background hydration
# is started, and cor-fsreplay runs a metadata-heavy workload: four
# processes creating, writing, truncating, punching, renaming, linking and
# unlinking many small files and directories, with fsync, fdatasync, syncfs
# and sync, and "durable" files (fsynced with their directory, then a log
# mark).  At 30 % of the workload the cor device is suspended and resumed,
# at 60 % its table is reloaded.
#
# Then the log is replayed onto a zeroed device, and at FLUSH and FUA points
# after the "setup" mark (random ones, the first few, where the mount
# writes, and the last entry) the state is checked: the replayed metadata
# passes cor_check, the cor device loads on it (over non-persistent
# snapshots, so the replay device is never written), the filesystem mounts
# (journal recovery), every durable file whose mark is in the replayed
# prefix is there with its content, and after unmounting e2fsck -fn /
# xfs_repair -n finds nothing.  cor passes no FUA write down, so the log
# holds the destination's writes in completion order: no plain write may be
# logged after an overlapping FUA write (see test_replay.sh, subtest 4).
#
# The control run is the same pipeline without dm-cor (the filesystem on
# the destination slice directly, which starts as a copy of the origin): it
# proves the harness.  And the checks can fail: on the control's final
# state a durable file's seed changed fails the content check, and the
# group descriptors zeroed fail e2fsck.
#
# Each run draws other points; the seed is printed, and COR_FSREPLAY_SEED=S
# repeats each process's operations and the draw of points (not how the
# processes interleave).  Tunables: COR_FSREPLAY_POINTS (random points,
# default 6, 0 for all), COR_FSREPLAY_FIRST (the first points, where
# the mount writes, 3), COR_FSREPLAY_OPS (per process, 300),
# COR_FSREPLAY_FS ("ext4 xfs"), COR_FSREPLAY_CONTROL_FS (filesystems with
# a control run, "ext4"), COR_FSREPLAY_CONTROL_POINTS (2).

. "$(dirname "$0")/lib.sh"

COR_FSREPLAY=${COR_FSREPLAY:-$COR_SELFTEST_DIR/cor-fsreplay}
POINTS=${COR_FSREPLAY_POINTS:-6}
FIRST=${COR_FSREPLAY_FIRST:-3}
CONTROL_POINTS=${COR_FSREPLAY_CONTROL_POINTS:-2}
OPS=${COR_FSREPLAY_OPS:-300}
FILESYSTEMS=${COR_FSREPLAY_FS:-ext4 xfs}
CONTROL_FS=${COR_FSREPLAY_CONTROL_FS:-ext4}

cor_test_init
[ -x "$COR_FSREPLAY" ] || ktap_skip_all "cor-fsreplay not built (make -C $COR_SELFTEST_DIR)"
COR_CHECK=$(cor_tool cor_check)
[ -n "$COR_CHECK" ] || ktap_skip_all "cor_check not built (make tools)"
cor_require_targets log-writes snapshot
cor_require_cmd mount umount mountpoint blockdev
with_control()	# with_control FS: whether FS gets a control run
{
	[[ " $CONTROL_FS " == *" $1 "* ]]
}

n=1
for fs in $FILESYSTEMS; do
	n=$((n + 2))
	with_control "$fs" && n=$((n + 1))
	[ "$fs" = ext4 ] && with_control ext4 && n=$((n + 1))
done
ktap_plan $n

SEED=${COR_FSREPLAY_SEED:-$((RANDOM * 32768 + RANDOM))}
REGION=128				# sectors (64 KiB)
FS_SECT=$((80 * 2048))			# 80 MiB filesystems
META_SECT=2048
LW_SECT=$((FS_SECT + META_SECT))
LW=$(dm_name lw)
COR=$(dm_name cor)
MNT=$COR_TMP/mnt
RMNT=$COR_TMP/rmnt
HOOK=$COR_TMP/hook.sh
mkdir -p "$MNT" "$RMNT"
ktap_diag "seed $SEED (COR_FSREPLAY_SEED=$SEED replays this run)"

# mkfs.xfs refuses filesystems below 300 MB unless it runs under fstests
export TEST_DIR=$COR_TMP TEST_DEV=/dev/null QA_CHECK_FS=1

fs_usable()	# fs_usable FS: its tools and the kernel's support
{
	case $1 in
	ext4) command -v mkfs.ext4 && command -v e2fsck ;;
	xfs) command -v mkfs.xfs && command -v xfs_repair ;;
	*) false ;;
	esac >/dev/null 2>&1 || return 1
	grep -qw "$1" /proc/filesystems || modprobe "$1" >/dev/null 2>&1
	grep -qw "$1" /proc/filesystems
}

mkfs_fs()	# mkfs_fs FS DEV
{
	case $1 in
	ext4) mkfs.ext4 -q -F -b 4096 -E nodiscard "$2" ;;
	xfs) mkfs.xfs -q -f -K "$2" ;;
	esac
}

umount_all()
{
	local m

	for m in "$MNT" "$RMNT"; do
		mountpoint -q "$m" 2>/dev/null && umount "$m"
	done
}

# drop_stack: unmount, and remove what a failed run or hook left (each
# run starts on a clean slate; the epilogue removes the rest)
drop_stack()
{
	local d

	umount_all
	for d in rcor rsnapm rsnapd; do
		dm_exists "$d" && dmsetup remove --retry "$(dm_name "$d")" >/dev/null 2>&1
	done
	dm_exists cor && cor_remove cor >/dev/null
	for d in dest meta lw; do
		dm_exists "$d" && dm_remove "$d"
	done
	return 0
}

# unmounted before the epilogue removes the devices (also after a timeout)
trap 'rc=$?; drop_stack; (exit $rc); cor_epilogue' EXIT

# The slices, made once: the logged data device (destination, then
# metadata), the log, the origin and the snapshots' COW devices, the
# replay device.  The workload's metadata is checked at every point.
st_setup()
{
	slice_create lwdata 0 $((LW_SECT / 2048))M && slice_create lwlog 1 900M &&
	slice_create origin 2 $((FS_SECT / 2048))M && slice_create cowd 2 96M &&
	slice_create cowm 2 4M && slice_create replay 3 $((LW_SECT / 2048))M || return
	dm_create rdest "0 $FS_SECT linear $(dm_path replay) 0" &&
	dm_create rmeta "0 $META_SECT linear $(dm_path replay) $FS_SECT" ||
		{ fail "cannot slice the replay device: $COR_LAST_OUTPUT"; return 1; }
	ORIGIN=$(dm_path origin)
}

# populate_origin FS: a filesystem with files on the origin
populate_origin()
{
	local out

	out=$(mkfs_fs "$1" "$ORIGIN" 2>&1) || { fail "mkfs.$1 on the origin: $out"; return 1; }
	out=$(mount -t "$1" "$ORIGIN" "$MNT" 2>&1) || { fail "mount the origin: $out"; return 1; }
	# in a directory of its own: the workload's names start at p0
	out=$(mkdir "$MNT/base" && "$COR_FSREPLAY" work "$MNT/base" --procs 2 --ops 400 \
		--seed $((SEED + 1)) 2>&1)
	local rc=$?

	umount "$MNT" || { fail "umount the origin"; return 1; }
	[ $rc -eq 0 ] || { fail "populating the origin: $out"; return 1; }
	COR_ORIGIN_SUMS[$ORIGIN]=$(origin_checksum "$ORIGIN")
}

# workload FS MODE: the logged run, MODE cor (the filesystem on the cor
# device) or plain (on the destination slice: the control)
workload()
{
	local fs=$1 mode=$2 dev out rc events=() table

	drop_stack
	zero_dev "$(dm_path replay)" && zero_dev "$(dm_path lwdata)" ||
		{ fail "cannot zero the data and replay slices"; return 1; }
	if [ "$mode" = plain ]; then
		# both start as the origin's filesystem
		dd if="$ORIGIN" of="$(dm_path lwdata)" bs=1M iflag=direct oflag=direct \
			status=none && dd if="$ORIGIN" of="$(dm_path replay)" bs=1M \
			iflag=direct oflag=direct status=none ||
			{ fail "cannot copy the origin"; return 1; }
	fi
	dm_create lw "0 $LW_SECT log-writes $(dm_path lwdata) $(dm_path lwlog)" ||
		{ fail "cannot create the log-writes device: $COR_LAST_OUTPUT"; return 1; }
	dm_create dest "0 $FS_SECT linear $(dm_path lw) 0" &&
	dm_create meta "0 $META_SECT linear $(dm_path lw) $FS_SECT" ||
		{ fail "cannot slice the log-writes device: $COR_LAST_OUTPUT"; return 1; }
	dev=$(dm_path dest)
	if [ "$mode" = cor ]; then
		cor_create cor "$ORIGIN" "$(dm_path dest)" "$(dm_path meta)" "$REGION" ||
			{ fail "cannot create the cor device: $COR_LAST_OUTPUT"; return 1; }
		cor_skip_meta_check "$(dm_path meta)" "checked by cor_check at every replay point"
		dev=$(dm_path cor)
		table=$(dmsetup table "$COR")
		events=(--event "30:dmsetup suspend $COR && dmsetup resume $COR"
			--event "60:dmsetup reload $COR --table '$table' && dmsetup resume $COR")
	fi
	out=$(dmsetup message "$LW" 0 mark setup 2>&1) || { fail "mark setup: $out"; return 1; }
	out=$(mount -t "$fs" -o discard "$dev" "$MNT" 2>&1) || { fail "mount: $out"; return 1; }
	# hydration from now on: the mount's own reads copy what it reads
	# first, as on a device that was just created under a booting system
	if [ "$mode" = cor ]; then
		out=$(dmsetup message "$COR" 0 hydration start 2>&1) ||
			{ fail "hydration start: $out"; return 1; }
	fi
	out=$("$COR_FSREPLAY" work "$MNT" --procs 4 --ops "$OPS" --seed "$SEED" \
		--mark-dev "$LW" --model-out "$COR_TMP/model" "${events[@]}" 2>&1)
	rc=$?
	ktap_diag "$out"
	umount "$MNT" || { fail "umount"; return 1; }
	[ $rc -eq 0 ] || { fail "the workload failed"; return 1; }
	if [ "$mode" = cor ]; then
		ktap_diag "cor status: $(dmsetup status "$COR")"
		cor_remove cor || return
	fi
	ktap_diag "log-writes status: $(dmsetup status "$LW")," \
		"$(wc -l <"$COR_TMP/model") durable files"
	dm_remove dest && dm_remove meta && dm_remove lw ||
		{ fail "cannot remove the logged devices: $COR_LAST_OUTPUT"; return 1; }
	out=$(cor_klog_since | grep -cE 'log-writes|Ran out of space|Error alloc')
	expect_eq "$out" 0 "log-writes errors in the kernel log" &&
	expect_eq "$(origin_checksum "$ORIGIN")" "${COR_ORIGIN_SUMS[$ORIGIN]}" \
		"origin checksum after the workload"
}

# The hook cor-fsreplay runs at each point: "check P ENTRY FLAGS".  Exit 0
# consistent, 1 not, 2 setup error.
write_hook()
{
	local fs=$1 mode=$2 sd sm rc fsck

	sd=$(dm_name rsnapd) sm=$(dm_name rsnapm) rc=$(dm_name rcor)
	cat >"$HOOK" <<EOF
# generated by test_fsreplay.sh ($fs, $mode)
set -u
p=\$2 entry=\$3 flags=\$4
teardown()
{
	mountpoint -q "$RMNT" && umount "$RMNT"
	for d in $rc $sm $sd; do
		dmsetup info "\$d" >/dev/null 2>&1 || continue
		dmsetup remove --retry "\$d" || return 2
	done
	return 0
}
found=0
bad()	# a finding; the checks go on, the hook exits 1 at the end
{
	echo "point \$p (entry \$entry, \$flags): \$*"
	found=1
}
fatal()	# a finding after which nothing more can be checked
{
	bad "\$@"
	teardown
	exit 1
}
dmsetup create $sd --table "0 $FS_SECT snapshot $(dm_path rdest) $(dm_path cowd) N 8" ||
	{ echo "point \$p: cannot snapshot the destination"; teardown; exit 2; }
dev=/dev/mapper/$sd
if [ $mode = cor ]; then
	dmsetup create $sm --table "0 $META_SECT snapshot $(dm_path rmeta) $(dm_path cowm) N 8" ||
		{ echo "point \$p: cannot snapshot the metadata"; teardown; exit 2; }
	out=\$("$COR_CHECK" -q /dev/mapper/$sm 2>&1) || fatal "cor_check: \$out"
	dmsetup create $rc \
		--table "0 $FS_SECT cor $ORIGIN /dev/mapper/$sd /dev/mapper/$sm $REGION" ||
		fatal "the cor device does not load: \$(dmesg | grep 'device-mapper: ' | tail -n 2)"
	dev=/dev/mapper/$rc
fi
out=\$(mount -t $fs "\$dev" "$RMNT" 2>&1) || fatal "mount: \$out"
out=\$("$COR_FSREPLAY" verify "$RMNT" --model "$COR_TMP/model" --marks "$COR_TMP/marks" 2>&1) ||
	bad "\$out"
umount "$RMNT" || fatal "umount"
EOF
	case $fs in
	ext4) fsck="e2fsck -fn" ;;
	xfs) fsck="xfs_repair -n" ;;
	esac
	cat >>"$HOOK" <<EOF
out=\$($fsck "\$dev" 2>&1) || bad "$fsck: \$(echo "\$out" | head -n 12)"
if [ $mode = cor ]; then
	dmsetup remove $rc || fatal "cannot remove the cor device"
	out=\$("$COR_CHECK" -q /dev/mapper/$sm 2>&1) || bad "cor_check after the mount: \$out"
fi
teardown || exit 2
exit \$found
EOF
}

# replay FS MODE POINTS [FIRST]: replay the log, check POINTS random
# FLUSH/FUA points, the FIRST ones (the mount) and the last entry
replay()
{
	local fs=$1 mode=$2 points=$3 first=${4:-0} out rc n

	write_hook "$fs" "$mode"
	out=$("$COR_FSREPLAY" replay --log "$(dm_path lwlog)" --replay "$(dm_path replay)" \
		--hook "bash $HOOK" --start-mark setup --points "$points" --first "$first" \
		--rng-seed "$SEED" --marks-out "$COR_TMP/marks" 2>&1)
	rc=$?
	ktap_diag "$out"
	expect_eq "$rc" 0 "cor-fsreplay replay exit status (0 consistent, 1 not, 2 error)" ||
		return
	n=$(sed -n 's/^cor-fsreplay: checked \([0-9]*\) points.*/\1/p' <<<"$out")
	expect_cmp "${n:-0}" -ge 2 "points checked" || return
	# the last point verified every durable file
	n=$(wc -l <"$COR_TMP/model")
	expect_cmp "$n" -gt 0 "durable files made" &&
	expect_eq "$(grep -c '^fsd' "$COR_TMP/marks")" "$n" "durable files' marks replayed" ||
		return
	# cor completes FUA writes by a commit and passes none down: the log
	# holds the destination's writes in the order they completed
	[ "$mode" = cor ] || return 0
	n=$(sed -n 's/^cor-fsreplay: \([0-9]*\) FUA writes logged after the start mark.*/\1/p' \
		<<<"$out")
	expect_eq "${n:-?}" 0 "FUA writes in the log (cor passes none down)" || return
	n=$(sed -n 's/^cor-fsreplay: \([0-9]*\) plain writes logged after an overlapping.*/\1/p' \
		<<<"$out")
	expect_eq "${n:-?}" 0 "plain writes logged after an overlapping FUA write"
}

st_fs()
{
	local fs=$1 what=$2

	fs_usable "$fs" || { subtest_skip "no $fs (tools or kernel)"; return; }
	case $what in
	cor-work) populate_origin "$fs" && workload "$fs" cor ;;
	cor-replay) replay "$fs" cor "$POINTS" "$FIRST" ;;
	plain) workload "$fs" plain && replay "$fs" plain "$CONTROL_POINTS" ;;
	esac
	local rc=$?

	umount_all
	return $rc
}

# The checks can fail: on the ext4 control's final state (the last
# replayed entry), a changed seed fails the content check and zeroed group
# descriptors fail e2fsck.
st_checks_fail()
{
	local sd out rc

	sd=$(dm_name rsnapd)
	fs_usable ext4 || { subtest_skip "no ext4"; return; }
	drop_stack
	[ -f "$COR_TMP/model" ] && [ -f "$COR_TMP/marks" ] ||
		{ fail "no control run to use"; return 1; }
	dm_create rsnapd "0 $FS_SECT snapshot $(dm_path rdest) $(dm_path cowd) N 8" ||
		{ fail "cannot snapshot: $COR_LAST_OUTPUT"; return 1; }
	out=$(mount -t ext4 "/dev/mapper/$sd" "$RMNT" 2>&1) || { fail "mount: $out"; return 1; }
	awk '{ print $1 }' "$COR_TMP/model" >"$COR_TMP/allmarks"
	awk 'NR == 1 { $4 = $4 + 1 } { print }' "$COR_TMP/model" >"$COR_TMP/badmodel"
	"$COR_FSREPLAY" verify "$RMNT" --model "$COR_TMP/model" --marks "$COR_TMP/allmarks" \
		>/dev/null 2>&1
	rc=$?
	expect_eq "$rc" 0 "verify of the final state" || { umount "$RMNT"; return 1; }
	"$COR_FSREPLAY" verify "$RMNT" --model "$COR_TMP/badmodel" --marks "$COR_TMP/allmarks" \
		>/dev/null 2>&1
	rc=$?
	umount "$RMNT" || { fail "umount"; return 1; }
	expect_eq "$rc" 1 "verify with one durable file's seed changed" || return
	dm_remove rsnapd || { fail "cannot remove the snapshot"; return 1; }
	dm_create rsnapd "0 $FS_SECT snapshot $(dm_path rdest) $(dm_path cowd) N 8" ||
		{ fail "cannot snapshot: $COR_LAST_OUTPUT"; return 1; }
	# block 1 of a 4 KiB-block ext4: the group descriptors
	dd if=/dev/zero of="/dev/mapper/$sd" bs=4096 seek=1 count=1 oflag=direct status=none &&
	e2fsck -fn "/dev/mapper/$sd" >/dev/null 2>&1
	rc=$?
	dm_remove rsnapd || { fail "cannot remove the snapshot"; return 1; }
	expect_cmp "$rc" -ge 4 "e2fsck -fn exit status with the group descriptors zeroed"
}

run_subtest "slices for the logged, replay and snapshot devices" st_setup
for fs in $FILESYSTEMS; do
	run_subtest "$fs on cor, 64 KiB regions, hydrating: logged workload, suspend, reload" \
		st_fs "$fs" cor-work
	run_subtest "$fs on cor: replayed FLUSH/FUA points mount, keep durable files, fsck clean" \
		st_fs "$fs" cor-replay
	with_control "$fs" || continue
	run_subtest "$fs without cor (control): the same pipeline is consistent" st_fs "$fs" plain
	[ "$fs" = ext4 ] &&
		run_subtest "the checks can fail: a changed fsynced file, zeroed descriptors" \
			st_checks_fail
done

cor_test_done
