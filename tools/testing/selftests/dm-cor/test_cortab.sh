#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_cortab.sh: setting devices up with corctl (create, activate,
# deactivate) against real devices.
#
# create refuses, with the numbers and nothing changed: blank metadata
# without --format, a destination or metadata device too small, an origin
# that a writable dm device maps, a destination something holds; when the
# kernel refuses, its own reason is printed.  create --format formats and
# the data reads as the origin; the same devices are re-attached, never
# formatted again.  Through /etc/cortab (a file here): deactivate commits
# and removes, a simulated reboot (every cor device removed, then
# "activate") brings back the region state and the data; activate of an
# active device is a no-op, of a name taken by another table a refusal; a
# line naming an origin in use is refused naming the holder.  Once every
# region is hydrated, activate brings the device up as linear over its
# destination, even with the origin gone.

. "$(dirname "$0")/lib.sh"

cor_test_init

CORCTL=$(cor_tool corctl)
CHECK=$(cor_tool cor_check)
[ -n "$CORCTL" ] && [ -n "$CHECK" ] ||
	ktap_skip_all "corctl or cor_check not built (make -C tools/dm-cor)"

ktap_plan 6

REGION=64			# sectors (32 KiB)
cor_setup_devs 32M 32M 1M || cor_bail "cannot create the test devices"
slice_create small_dest 1 16M || cor_bail "cannot create a small destination"
slice_create small_meta 2 8K || cor_bail "cannot create a small metadata device"
# earlier tests of the boot leave data on the disks
zero_dev "$(dm_path small_meta)" || cor_bail "cannot zero the small metadata device"
stamp_origin || cor_bail "cannot stamp the origin"
NAME=$(dm_name cor)
SMALL_DEST=$(dm_path small_dest)
SMALL_META=$(dm_path small_meta)
TOTAL=$((ORIGIN_SECTORS / REGION))
MODEL=$COR_TMP/model
CORTAB=$COR_TMP/cortab
# the expected content: the origin, then what the test writes
dd if="$ORIGIN" of="$MODEL" bs=1M status=none iflag=direct || cor_bail "cannot copy the origin"
printf '# test cortab\n%s %s %s %s region-size=32k\n' "$NAME" "$ORIGIN" "$DEST" "$META" >"$CORTAB"

# corctl ARGS...: run it; output in $OUT, exit status in $RC
corctl()
{
	OUT=$("$CORCTL" "$@" 2>&1)
	RC=$?
	ktap_diag "corctl $*: exit $RC: $(head -c 600 <<<"$OUT" | tr '\n' '|')"
}

# expect_refused PATTERN: the last corctl exited 1 saying PATTERN, and no
# cor device exists
expect_refused()
{
	[ "$RC" -eq 1 ] || fail "exit $RC, expected 1 (refused): $OUT"
	# a message may take two lines
	tr '\n' ' ' <<<"$OUT" | grep -qE -- "$1" || fail "no '$1' in: $OUT"
	if dm_exists "$NAME"; then
		fail "$NAME was created"
		dmsetup remove "$NAME" >/dev/null 2>&1
	fi
}

# data_matches DEV [MIB]: DEV reads exactly as the model (its first MIB MiB;
# a whole read hydrates every region)
data_matches()
{
	local n=()

	[ -n "$2" ] && n=(-n $(($2 * 1048576)))
	cmp -s "${n[@]}" "$1" "$MODEL" && return 0
	fail "$1 differs from the model (origin + writes):" \
		"$(cmp "${n[@]}" "$1" "$MODEL" 2>&1 | head -n 1)"
}

# expect_said RC PATTERN WHAT: the last corctl exited RC and said PATTERN
expect_said()
{
	[ "$RC" -eq "$1" ] && tr '\n' ' ' <<<"$OUT" | grep -qE -- "$2" && return 0
	fail "$3: exit $RC (expected $1), no '$2' in: $OUT"
}

meta_sum() { dd if="$META" bs=4K count=2 iflag=direct status=none | sha256sum; }

st_refusals()
{
	local zero_sum holder want

	zero_sum=$(meta_sum)
	corctl create "$NAME" "$ORIGIN" "$DEST" "$META" -r 32k
	expect_refused "metadata $META is blank .*refusing to format it without --format"
	corctl create "$NAME" "$ORIGIN" "$SMALL_DEST" "$META" -r 32k --format
	want="destination $SMALL_DEST is too small: 32768 sectors \(16.0 MiB\), "
	expect_refused "${want}the device needs 65536 sectors \(32.0 MiB\)"
	corctl create "$NAME" "$ORIGIN" "$DEST" "$SMALL_META" -r 32k --format
	want="metadata $SMALL_META is too small: 16 sectors \(8.0 KiB\), "
	expect_refused "${want}1024 regions of 64 sectors need 48 sectors \(24.0 KiB\)"
	corctl create "$NAME" "$ORIGIN" "$DEST" "$DEST" --format
	expect_refused "three different devices"
	corctl create "$NAME" /dev/null "$DEST" "$META" --format
	expect_refused "origin /dev/null is not a block device"
	corctl create "$NAME" "$ORIGIN" "$DEST" "$COR_TMP/nonexistent" --format
	expect_refused "metadata $COR_TMP/nonexistent: No such file"

	# a writable mapping of the origin (an LV still active on it)
	dm_create writer "0 8192 linear $ORIGIN 0" || { fail "cannot create a writer"; return; }
	holder=$(dm_name writer)
	corctl create "$NAME" "$ORIGIN" "$DEST" "$META" -r 32k --format
	expect_refused "origin $ORIGIN is in use by $holder \(dm-[0-9]+, linear\), which could"
	grep -q "deactivate $holder first" <<<"$OUT" || fail "no advice: $OUT"
	# the same through cortab (a line that may format)
	sed 's/region-size=32k$/region-size=32k,format/' "$CORTAB" >"$COR_TMP/format.cortab"
	corctl activate --cortab "$COR_TMP/format.cortab"
	expect_refused "origin $ORIGIN is in use by $holder"
	grep -q "not activated" <<<"$OUT" || fail "activate does not say what it skipped: $OUT"
	dm_remove writer || fail "cannot remove the writer"
	# anything holding the destination
	dm_create reader "0 8192 linear $DEST 0" --readonly ||
		{ fail "cannot create a reader"; return; }
	corctl create "$NAME" "$ORIGIN" "$DEST" "$META" -r 32k --format
	expect_refused "destination $DEST is in use by $(dm_name reader)"
	dm_remove reader || fail "cannot remove the reader"

	# a limit only the kernel knows: its own reason is printed
	corctl create "$NAME" "$ORIGIN" "$DEST" "$META" -r 32k --format --hydration-threshold 100000
	expect_refused "kernel: .*(Invalid hydration_threshold|hydration_threshold)"
	[ "$(meta_sum)" = "$zero_sum" ] || fail "a refused create changed the metadata device"
}

st_create_format()
{
	local fmt

	corctl create "$NAME" "$ORIGIN" "$DEST" "$META" --region-size 32k --format --dry-run
	expect_said 0 "would format the metadata and load \"0 $ORIGIN_SECTORS cor " "the dry run"
	dm_exists "$NAME" && fail "the dry run created the device"
	corctl create "$NAME" "$ORIGIN" "$DEST" "$META" --region-size 32k --format
	[ "$RC" -eq 0 ] || { fail "create --format: exit $RC: $OUT"; return; }
	COR_DEVS+=("$NAME")
	grep -q "metadata $META formatted: $TOTAL regions" <<<"$OUT" || fail "create said: $OUT"
	fmt=$(cor_status_fields "$NAME" region_size total_regions mode)
	expect_eq "$fmt" "$REGION $TOTAL rw" "region size, regions and mode"
	# read a third of it (copy-on-read), write 1 MiB at 5 MiB (a model update)
	dd if="/dev/mapper/$NAME" of=/dev/null bs=1M count=10 iflag=direct status=none ||
		fail "cannot read $NAME"
	head -c 1M /dev/urandom >"$COR_TMP/w"
	dd if="$COR_TMP/w" of="/dev/mapper/$NAME" bs=1M seek=5 count=1 oflag=direct,sync \
		status=none conv=notrunc || fail "cannot write $NAME"
	dd if="$COR_TMP/w" of="$MODEL" bs=1M seek=5 count=1 status=none conv=notrunc
	data_matches "/dev/mapper/$NAME" 10
	# create does not take an existing device, even the same one
	corctl create "$NAME" "$ORIGIN" "$DEST" "$META"
	expect_said 1 "$NAME exists" "a second create of $NAME"
}

st_reboot()
{
	local before after

	dm_exists "$NAME" || { fail "no device from the previous subtest"; return; }
	before=$(cor_bitmap "$NAME" hydrated 0 "$TOTAL")
	[ -n "$before" ] || fail "nothing hydrated before the reboot"
	corctl activate --cortab "$CORTAB" "$NAME"
	expect_said 0 "already active" "activate of an active device"
	corctl deactivate --cortab "$CORTAB"
	expect_said 0 "$NAME: deactivated" "deactivate"
	dm_exists "$NAME" && { fail "$NAME still exists"; return; }
	"$CHECK" "$META" >"$COR_TMP/check" 2>&1 ||
		fail "cor_check after deactivate: $(cat "$COR_TMP/check")"
	corctl deactivate --cortab "$CORTAB" "$NAME"
	expect_said 0 "not active" "deactivate of an inactive device"

	# --format is never needed again, and never allowed on valid metadata
	corctl create "$NAME" "$ORIGIN" "$DEST" "$META" --format
	expect_refused "dm-cor metadata, [0-9]+/$TOTAL regions hydrated"
	corctl activate --cortab "$CORTAB"
	[ "$RC" -eq 0 ] || { fail "activate after the reboot: exit $RC: $OUT"; return; }
	expect_said 0 "re-attached: [0-9]*/$TOTAL regions hydrated" "activate after the reboot"
	after=$(cor_bitmap "$NAME" hydrated 0 "$TOTAL")
	expect_eq "$after" "$before" "hydrated regions after the reboot"
	data_matches "/dev/mapper/$NAME"
	after=$(cor_bitmap "$NAME" hydrated 0 "$TOTAL")
	expect_eq "$after" "0-$((TOTAL - 1))" "hydrated regions after reading everything"

	# a name taken by something else
	corctl deactivate --cortab "$CORTAB" "$NAME"
	dm_create "$NAME" "0 8 zero" || { fail "cannot create a zero device"; return; }
	corctl activate --cortab "$CORTAB" "$NAME"
	expect_said 1 "exists with another table \(zero\)" "activate over another device"
	dm_remove "$NAME" || fail "cannot remove the zero device"
}

st_busy()
{
	corctl activate --cortab "$CORTAB"
	[ "$RC" -eq 0 ] || { fail "activate: $OUT"; return; }
	exec {fd}<"/dev/mapper/$NAME"
	corctl deactivate --cortab "$CORTAB"
	expect_said 1 "$NAME is open" "deactivate of an open device"
	exec {fd}<&-
	dm_exists "$NAME" || fail "an open device was removed"
}

st_hydrated_linear()
{
	local table

	dm_exists "$NAME" || { fail "no device from the previous subtest"; return; }
	# every region was read in st_reboot: already linear since st_busy
	corctl deactivate --cortab "$CORTAB" "$NAME"
	[ "$RC" -eq 0 ] || { fail "deactivate: $OUT"; return; }
	# the origin is gone: only the destination is read
	dm_remove origin || { fail "cannot remove the origin"; return; }
	corctl activate --cortab "$CORTAB"
	expect_said 0 "every region is hydrated: activated as linear over $DEST" \
		"activate of a hydrated device"
	table=$(dmsetup table "$NAME")
	expect_eq "$table" "0 $ORIGIN_SECTORS linear $(dev_majmin "$DEST") 0" \
		"table of the hydrated device"
	data_matches "/dev/mapper/$NAME"
	corctl deactivate --cortab "$CORTAB"
	[ "$RC" -eq 0 ] || fail "deactivate of the linear device: $OUT"
	# the origin is back (the same slice) for the epilogue's checksum
	dm_create origin "0 $ORIGIN_SECTORS linear $(cor_disk 0) 0" ||
		fail "cannot restore the origin"
}

st_bad_cortab()
{
	local f=$COR_TMP/bad.cortab

	dm_exists "$NAME" && dm_remove "$NAME"

	printf '%s %s %s %s bogus\n' "$NAME" "$ORIGIN" "$DEST" "$META" >"$f"
	corctl activate --cortab "$f"
	expect_refused "$f:1: unknown option 'bogus'"
	printf '%s UUID=%s %s %s\n' "$NAME" "$(uuidgen 2>/dev/null || echo x)" "$DEST" "$META" >"$f"
	corctl activate --cortab "$f" "$NAME"
	expect_refused "tags such as UUID= and LABEL= are refused"
	printf '%s %s /dev/nonexistent %s\n' "$NAME" "$ORIGIN" "$META" >"$f"
	corctl activate --cortab "$f"
	expect_refused "destination /dev/nonexistent: No such file"
}

run_subtest "create refuses bad devices with the numbers, changing nothing" st_refusals
run_subtest "create --format, copy-on-read, a write, no second format" st_create_format
run_subtest "deactivate, simulated reboot, activate: state and data back" st_reboot
run_subtest "deactivate refuses an open device" st_busy
run_subtest "a hydrated line comes back as linear, its origin removed" st_hydrated_linear
run_subtest "bad cortab lines in the VM: refused, nothing created" st_bad_cortab

if dm_exists "$NAME"; then
	dmsetup remove "$NAME" >/dev/null 2>&1
fi
