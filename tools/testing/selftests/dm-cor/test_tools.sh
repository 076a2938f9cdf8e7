#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_tools.sh: the metadata tools (tools/dm-cor/) against real devices.
#
# cor_check, cor_dump, cor_repair and cor_restore refuse the metadata device
# of a live cor device (it is held exclusively) and leave the device
# working.  Metadata the kernel wrote round-trips: cor_dump -f xml, then
# cor_restore onto another device, then cor_dump prints the same dump byte
# for byte, and a cor device loads the restored metadata with the same
# bitmaps and the same data.  A copy whose hydrated bitmap block is
# damaged is refused by cor_check; cor_repair rebuilds it keeping the dirty
# regions (exit 4: clean regions are only copied again), and the kernel
# loads the result with the written data intact.
# (The host test tools/dm-cor/tests/test_tools.sh covers the rest of the
# command line contract without a kernel.)

. "$(dirname "$0")/lib.sh"

cor_test_init
cor_require_cmd cmp base64
TOOLS=
for t in "$COR_TOOLS_DIR" "$COR_REPO_ROOT/tools/dm-cor" /dm-cor/tools/dm-cor; do
	[ -n "$t" ] && [ -x "$t/cor_restore" ] && { TOOLS=$t; break; }
done
[ -z "$TOOLS" ] && command -v cor_restore >/dev/null 2>&1 &&
	TOOLS=$(dirname "$(command -v cor_restore)")
[ -n "$TOOLS" ] || ktap_skip_all "the dm-cor tools are not built (make -C tools/dm-cor)"
ktap_plan 3

SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors (32 KiB)

cor_setup_devs 16M 16M 4M || cor_bail "cannot create the test devices"
slice_create meta2 2 1M && slice_create meta3 2 1M || cor_bail "cannot create the test devices"
META2=$(dm_path meta2)
META3=$(dm_path meta3)
for m in "$META2" "$META3"; do
	zero_dev "$m" || cor_bail "cannot zero $m"
done
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
TOTAL=$((ORIGIN_SECTORS / REGION))
DATA=$COR_TMP/data
"$COR_PATTERN" gen 0 16 $((SEED + 1)) --pattern-version 1 >"$DATA" ||
	cor_bail "cannot build the data"
cat >"$COR_TMP/small.xml" <<EOF
<cor_metadata version="1" region_sectors="$REGION" target_sectors="$ORIGIN_SECTORS">
  <superblock slot="0" generation="1" active_area="0"/>
  <superblock slot="1" state="unused"/>
</cor_metadata>
EOF

# refused WHAT cmd...: the tool must fail and say the device is in use
refused()
{
	local what=$1 out rc

	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		fail "$what on live metadata succeeded: $out"
		return 1
	fi
	case "$out" in
	*"in use"*) ktap_diag "$what: exit $rc: $out" ;;
	*) fail "$what: exit $rc, but no 'in use' message: $out"; return 1 ;;
	esac
}

st_live_refused()
{
	local st0

	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	# regions 10-11 written whole (dirty), regions 20-29 read (hydrated)
	dd_write "$DATA" 0 "$(dm_path cor)" $((10 * REGION)) $((2 * REGION)) ||
		{ fail "write of regions 10-11"; return 1; }
	dd_read "$(dm_path cor)" $((20 * REGION)) $((10 * REGION)) "$COR_TMP/read" ||
		{ fail "read of regions 20-29"; return 1; }
	wait_hydrated cor 12 || { fail "regions not hydrated"; return 1; }
	sync
	st0=$(cor_status_fields cor hydrated dirty mode)
	refused "cor_check" "$TOOLS/cor_check" "$META" || return
	refused "cor_dump" "$TOOLS/cor_dump" -f xml "$META" || return
	refused "cor_repair -i" "$TOOLS/cor_repair" -i "$META" -o "$COR_TMP/repaired" || return
	[ -e "$COR_TMP/repaired" ] && { fail "cor_repair left an output behind"; return 1; }
	dd if=/dev/zero of="$COR_TMP/zero.img" bs=4096 count=2 status=none
	refused "cor_repair -o" "$TOOLS/cor_repair" -i "$COR_TMP/zero.img" -o "$META" || return
	refused "cor_restore" "$TOOLS/cor_restore" -i "$COR_TMP/small.xml" -o "$META" || return
	expect_eq "$(cor_status_fields cor hydrated dirty mode)" "$st0" \
		"status after the refused tools" || return
	expect_eq "$(cor_bitmap cor dirty 0 "$TOTAL")" "10-11" "dirty bitmap" || return
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "10-11 20-29" "hydrated bitmap"
}

# same_device_state NAME: bitmaps and the written data of the first test
same_device_state()
{
	expect_eq "$(cor_bitmap "$1" dirty 0 "$TOTAL")" "$2" "$1: dirty bitmap" &&
	expect_eq "$(cor_bitmap "$1" hydrated 0 "$TOTAL")" "$3" "$1: hydrated bitmap" &&
	expect_dev_matches_file "$1: written regions 10-11" "$(dm_path "$1")" $((10 * REGION)) \
		$((2 * REGION)) "$DATA" 0
}

st_round_trip()
{
	dm_exists cor && { cor_remove cor || return; }
	expect_ok "cor_check of the kernel's metadata" "$TOOLS/cor_check" "$META" || return
	expect_ok "cor_dump -f xml" "$TOOLS/cor_dump" -f xml -o "$COR_TMP/a.xml" "$META" || return
	ktap_diag "$(cat "$COR_TMP/a.xml")"
	expect_ok "cor_restore" "$TOOLS/cor_restore" -i "$COR_TMP/a.xml" -o "$META2" || return
	expect_ok "cor_dump of the restored metadata" "$TOOLS/cor_dump" -f xml -o "$COR_TMP/b.xml" \
		"$META2" || return
	if ! cmp "$COR_TMP/a.xml" "$COR_TMP/b.xml" >/dev/null; then
		ktap_diag "$(diff "$COR_TMP/a.xml" "$COR_TMP/b.xml")"
		fail "the dump of the restored metadata differs"
		return 1
	fi
	cor_create cor2 "$ORIGIN" "$DEST" "$META2" "$REGION" ||
		{ fail "the restored metadata does not load: $COR_LAST_OUTPUT"; return 1; }
	same_device_state cor2 "10-11" "10-11 20-29" || return
	cor_remove cor2
}

st_repair()
{
	local img=$COR_TMP/bad.img fixed=$COR_TMP/fixed.img rc area blocks

	# 512 regions: one block per bitmap, 6 blocks in all; the active
	# area's hydrated block is block 2 + area * 2
	dd if="$META" of="$img" bs=4096 count=6 status=none || { fail "copy of $META"; return 1; }
	area=$("$TOOLS/cor_dump" "$META" | awk '/\(active\)/ { sub(",", "", $6); print $6 }')
	expect_num "$area" "active area" || return
	printf 'garbage' | dd of="$img" bs=1 seek=$(((2 + area * 2) * 4096 + 100)) conv=notrunc \
		status=none
	expect_fail "cor_check of a damaged copy" "$TOOLS/cor_check" "$img" || return
	"$TOOLS/cor_repair" -i "$img" -o "$fixed" >"$COR_TMP/repair.out" 2>&1
	rc=$?
	ktap_diag "$(cat "$COR_TMP/repair.out")"
	expect_eq "$rc" 4 "cor_repair exit status (only clean regions given up)" || return
	expect_ok "cor_check of the repaired copy" "$TOOLS/cor_check" "$fixed" || return
	blocks=$(($(stat -c %s "$fixed") / 4096))
	dd if="$fixed" of="$META3" bs=4096 count="$blocks" oflag=direct status=none ||
		{ fail "copy to $META3"; return 1; }
	cor_create cor3 "$ORIGIN" "$DEST" "$META3" "$REGION" ||
		{ fail "the repaired metadata does not load: $COR_LAST_OUTPUT"; return 1; }
	# the dirty regions stay, the clean copies are forgotten
	same_device_state cor3 "10-11" "10-11" || return
	expect_dev_matches_file "cor3: a forgotten clean region reads the origin" \
		"$(dm_path cor3)" $((20 * REGION)) "$REGION" "$COR_TMP/read" 0 || return
	cor_remove cor3
}

run_subtest "the tools refuse the metadata of a live cor device" st_live_refused
run_subtest "kernel metadata: dump, restore, dump is identical and loads again" st_round_trip
run_subtest "repair of a damaged hydrated block keeps the dirty regions and loads" st_repair

cor_test_done
