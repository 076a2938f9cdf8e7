#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_lvm.sh: LVM both ways, set up with corctl, ext4 on top.
#
# LVs under: origin, destination and metadata are LVs; the origin's files
# read through the cor device, hydration, finalize with the filesystem
# mounted, lvremove of the origin, fsck clean.
# A VG on top, and the migration of a PV (the origin is a PV of a
# deactivated VG), with LVM's devices file in use: corctl takes the
# components out of it and puts the cor device in, so LVM sees exactly
# one PV before and after finalize and after a simulated reboot (every dm
# device of the test removed, then "corctl activate" and "vgchange -aay"
# as a booting system runs them), with the files intact.  LVM's
# configuration is a copy of the guest's in LVM_SYSTEM_DIR, so nothing
# outside the test changes.

. "$(dirname "$0")/lib.sh"

cor_test_init

CORCTL=$(cor_tool corctl)
[ -n "$CORCTL" ] || ktap_skip_all "corctl not built (make -C tools/dm-cor)"
cor_require_cmd lvm mkfs.ext4 e2fsck mount umount
[ -f /etc/lvm/lvm.conf ] || ktap_skip_all "no /etc/lvm/lvm.conf"

ktap_plan 3

LVMDIR=$COR_TMP/lvm
mkdir -p "$LVMDIR/devices" "$LVMDIR/backup" "$LVMDIR/archive" "$COR_TMP/mnt"
cp /etc/lvm/lvm.conf "$LVMDIR/lvm.conf"
export LVM_SYSTEM_DIR=$LVMDIR
MNT=$COR_TMP/mnt
VG=${COR_PREFIX//-/_}vg
NAME=$(dm_name cor)
CORTAB=$COR_TMP/cortab

lvm_cmd()	# lvm_cmd CMD ARGS...: output in $OUT
{
	OUT=$(lvm "$@" 2>&1)
	local rc=$?

	[ $rc -eq 0 ] || fail "lvm $*: exit $rc: $OUT"
	return $rc
}

corctl()
{
	OUT=$("$CORCTL" "$@" 2>&1)
	RC=$?
	ktap_diag "corctl $*: exit $RC: $(tr '\n' '|' <<<"$OUT")"
	[ $RC -eq 0 ] || fail "corctl $*: exit $RC: $OUT"
	return $RC
}

# use_devices_file 0|1
use_devices_file()
{
	sed -i '/^devices { use_devicesfile/d' "$LVMDIR/lvm.conf"
	rm -f "$LVMDIR/devices/system.devices"
	if [ "$1" = 1 ]; then
		# search_for_devnames = "none": a PV missing at boot is not looked
		# for on other devices (the destination carries its label too)
		printf 'devices { use_devicesfile = 1 search_for_devnames = "none" }\n' \
			>>"$LVMDIR/lvm.conf"
		: >"$LVMDIR/devices/system.devices"
	fi
}

# files_make DIR: a few files; their checksums in $COR_TMP/sums
files_make()
{
	local i

	for i in 1 2 3 4; do
		head -c $((i * 700 * 1024)) /dev/urandom >"$1/f$i" || return 1
	done
	(cd "$1" && sha256sum f*) >"$COR_TMP/sums"
	sync
}

files_check()	# files_check DIR
{
	(cd "$1" && sha256sum -c --quiet "$COR_TMP/sums") >/dev/null 2>&1 ||
		fail "files on $1 differ:" \
			"$(cd "$1" && sha256sum -c "$COR_TMP/sums" 2>&1 | tr '\n' ' ')"
}

fsck_clean()	# fsck_clean DEV: e2fsck finds nothing to fix
{
	e2fsck -fn "$1" >"$COR_TMP/fsck" 2>&1 || fail "e2fsck $1: $(tail -n 5 "$COR_TMP/fsck")"
}

# write_hydrate_finalize: a new file on $MNT (in the checksums), then the
# whole device hydrated and finalized with the filesystem mounted
write_hydrate_finalize()
{
	head -c 300K /dev/urandom >"$MNT/new" && (cd "$MNT" && sha256sum new) >>"$COR_TMP/sums"
	sync
	cor_message "$NAME" hydration start || { fail "hydration start"; return 1; }
	wait_hydrated "$NAME" "$(cor_status_field "$NAME" total_regions)" ||
		{ fail "hydration did not complete"; return 1; }
	corctl finalize "$NAME"
}

# one_pv VG DEV: LVM reports exactly one PV for VG, DEV, and no duplicate
one_pv()
{
	local pvs

	lvm_cmd pvs --noheadings -o pv_name,vg_name || return
	grep -qiE 'duplicate|prefers device|Not using device' <<<"$OUT" &&
		fail "LVM sees duplicates: $OUT"
	pvs=$(awk -v vg="$1" '$2 == vg { print $1 }' <<<"$OUT")
	expect_eq "$pvs" "$2" "the PVs of $1"
}

# reboot_sim VG: unmount, deactivate the VG and the (finalized) cor
# device, then activate them again as a booting system does: the device
# comes back as linear, since its metadata records every region hydrated
reboot_sim()
{
	umount "$MNT" || fail "cannot unmount"
	lvm_cmd vgchange -an "$1" || return
	corctl deactivate --cortab "$CORTAB" || return
	dm_exists "$NAME" && { fail "$NAME is still there"; return 1; }
	lvm lvs --noheadings -o lv_active "$1" 2>/dev/null | grep -q active &&
		fail "$1 is active without its PV"
	corctl activate --cortab "$CORTAB" || return
	expect_eq "$(dmsetup table "$NAME" | awk '{ print $3 }')" linear \
		"the target of $NAME after the reboot"
	lvm_cmd vgchange -aay "$1" || return
}

teardown()	# teardown VG
{
	grep -q " $MNT " /proc/mounts && umount "$MNT"
	lvm vgremove -ff -y "$1" >/dev/null 2>&1
	dm_exists "$NAME" && dmsetup remove "$NAME" >/dev/null 2>&1
	return 0
}

st_lvs_under()
{
	local pv vg=${VG}a

	use_devices_file 0
	# a whole disk: a slice would show its PV label on the disk too;
	# earlier tests of the boot may have left a filesystem on it
	pv=$(cor_disk 3) || { fail "no fourth scratch disk"; return; }
	dd if=/dev/zero of="$pv" bs=1M count=4 oflag=direct status=none
	lvm_cmd pvcreate -q -y -ff "$pv" && lvm_cmd vgcreate -q "$vg" "$pv" &&
		lvm_cmd lvcreate -q -y -Wy -L 40M -n origin "$vg" &&
		lvm_cmd lvcreate -q -y -Wy -L 40M -n dest "$vg" &&
		lvm_cmd lvcreate -q -y -Wy -L 4M -n meta "$vg" || return
	mkfs.ext4 -q -F "/dev/$vg/origin" && mount "/dev/$vg/origin" "$MNT" && files_make "$MNT" &&
		umount "$MNT" || { fail "cannot make the origin's filesystem"; return; }
	dd if=/dev/zero of="/dev/$vg/meta" bs=4K count=2 oflag=direct status=none
	printf '%s /dev/%s/origin /dev/%s/dest /dev/%s/meta format,region-size=64k\n' \
		"$NAME" "$vg" "$vg" "$vg" >"$CORTAB"
	corctl activate --cortab "$CORTAB" || return
	mount "/dev/mapper/$NAME" "$MNT" || { fail "cannot mount $NAME"; return; }
	files_check "$MNT"
	write_hydrate_finalize || return
	lvm_cmd lvremove -q -y "$vg/origin" || return
	files_check "$MNT"
	umount "$MNT"
	fsck_clean "/dev/mapper/$NAME"
	dmsetup remove "$NAME" || fail "cannot remove $NAME"
	fsck_clean "/dev/$vg/dest"
	teardown "$vg"
	lvm pvremove -q -y "$pv" >/dev/null 2>&1
	dd if=/dev/zero of="$pv" bs=1M count=1 oflag=direct status=none
}

st_vg_on_top()
{
	local vg=${VG}b

	use_devices_file 1
	slice_create origin_b 0 64M && slice_create dest_b 1 64M &&
		slice_create meta_b 2 1M || return
	zero_dev "$(dm_path meta_b)" || return
	stamp_origin "" "$(dm_path origin_b)" || return
	printf '%s %s %s %s format\n' "$NAME" "$(dm_path origin_b)" "$(dm_path dest_b)" \
		"$(dm_path meta_b)" >"$CORTAB"
	corctl activate --cortab "$CORTAB" || return
	lvm_cmd pvcreate -q -y -ff "/dev/mapper/$NAME" &&
		lvm_cmd vgcreate -q "$vg" "/dev/mapper/$NAME" &&
		lvm_cmd lvcreate -q -y -Wy -L 32M -n data "$vg" || return
	one_pv "$vg" "/dev/mapper/$NAME"
	mkfs.ext4 -q -F "/dev/$vg/data" && mount "/dev/$vg/data" "$MNT" && files_make "$MNT" ||
		{ fail "cannot make the filesystem"; return; }
	cor_message "$NAME" hydration start || fail "hydration start"
	wait_hydrated "$NAME" "$(cor_status_field "$NAME" total_regions)" ||
		{ fail "hydration did not complete"; return; }
	corctl finalize "$NAME" || return
	one_pv "$vg" "/dev/mapper/$NAME"
	reboot_sim "$vg" || return
	one_pv "$vg" "/dev/mapper/$NAME"
	mount "/dev/$vg/data" "$MNT" || { fail "cannot mount after the reboot"; return; }
	files_check "$MNT"
	umount "$MNT"
	fsck_clean "/dev/$vg/data"
	teardown "$vg"
}

st_pv_migration()
{
	local vg=${VG}c origin sum

	use_devices_file 1
	slice_create origin_c 0 64M && slice_create dest_c 1 64M &&
		slice_create meta_c 2 1M || return
	origin=$(dm_path origin_c)
	zero_dev "$(dm_path meta_c)" || return
	lvm_cmd pvcreate -q -y -ff "$origin" && lvm_cmd vgcreate -q "$vg" "$origin" &&
		lvm_cmd lvcreate -q -y -Wy -L 40M -n data "$vg" || return
	mkfs.ext4 -q -F "/dev/$vg/data" && mount "/dev/$vg/data" "$MNT" && files_make "$MNT" &&
		umount "$MNT" || { fail "cannot make the filesystem"; return; }
	lvm_cmd vgchange -an "$vg" || return
	sum=$(sha256sum <"$origin")
	one_pv "$vg" "$origin"

	printf '%s %s %s %s format,region-size=64k\n' "$NAME" "$origin" "$(dm_path dest_c)" \
		"$(dm_path meta_c)" >"$CORTAB"
	corctl activate --cortab "$CORTAB" || return
	grep -q "LVM devices file: .* removed" <<<"$OUT" ||
		fail "the origin stayed in the devices file"
	one_pv "$vg" "/dev/mapper/$NAME"
	lvm_cmd vgchange -ay "$vg" || return
	mount "/dev/$vg/data" "$MNT" || { fail "cannot mount the migrated LV"; return; }
	files_check "$MNT"
	write_hydrate_finalize || return
	one_pv "$vg" "/dev/mapper/$NAME"
	reboot_sim "$vg" || return
	one_pv "$vg" "/dev/mapper/$NAME"
	mount "/dev/$vg/data" "$MNT" || { fail "cannot mount after the reboot"; return; }
	files_check "$MNT"
	umount "$MNT"
	fsck_clean "/dev/$vg/data"
	lvm_cmd vgchange -an "$vg"
	expect_eq "$(sha256sum <"$origin")" "$sum" "the origin's checksum"
	teardown "$vg"
}

run_subtest "LVs under: origin, destination and metadata LVs; lvremove the origin" st_lvs_under
run_subtest "a VG on top: one PV, finalize mounted, simulated reboot" st_vg_on_top
run_subtest "PV migration: one PV before and after finalize and the reboot" st_pv_migration
