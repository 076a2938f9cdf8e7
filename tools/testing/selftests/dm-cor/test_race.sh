#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_race.sh: writes racing copy-on-read of the same regions lose nothing.
#
# cor-race runs writer and reader threads over the first 3/4 of a small
# stamped origin, with I/O concentrated in a window that sweeps the device,
# so that reads start copies of regions that writers are writing at the
# same moment; then reader threads alone race each other into the copies of
# the whole device.  Every read is checked against the model while the race
# runs, and every block at the end.  One subtest per region size:
#
#   8 sectors     every write covers whole regions (no origin read), racing
#                 the copies that reads of the same regions start;
#   64 sectors    partial writes (copy first) and whole-region writes;
#   1024 sectors  many writers and readers inside few large regions: partial
#                 writes waiting for copies, reads finding the region busy.
#
# Each subtest then checks the bitmaps against the model (a region is dirty
# exactly when a block of it was written), removes the device and checks the
# destination directly through a read-only dm-linear "view" that maps the
# hydrated regions to the destination and the others to the origin (the
# clean regions must hold the origin, the dirty ones the model), re-creates
# the device on the same metadata, checks that the bitmaps are identical
# and verifies the model through cor again.
#
# COR_RACE_SECONDS (default 6) sets the length of each writers' race.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_model.sh"

cor_test_init
ktap_plan 3

SEED=$((RANDOM * 32768 + RANDOM))
RACE_SECONDS=${COR_RACE_SECONDS:-6}
SIZE=16M

# origin on disk 0; a destination per region size on disk 1; one metadata
# device on disk 2, zeroed for each region size
slice_create origin 0 "$SIZE" || cor_bail "cannot create the origin"
slice_create meta 2 64K || cor_bail "cannot create the metadata device"
ORIGIN=$(dm_path origin)
META=$(dm_path meta)
ORIGIN_SECTORS=$(dev_sectors "$ORIGIN")
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"

########################################################################
# helpers (few processes: each one is slow in the test VM)

# view_create NAME REGION "RANGES": a read-only dm-linear device the size
# of the origin mapping the regions in RANGES to $CUR_DEST and all others
# to $ORIGIN, so that one pass checks the destination's regions in place.
view_create()
{
	local name table rc out

	name=$(dm_name "$1")
	table=$COR_TMP/$1.table
	awk -v ranges="$3" -v r="$2" -v total=$((ORIGIN_SECTORS / $2)) \
		-v o="$ORIGIN" -v d="$CUR_DEST" '
		BEGIN {
			n = split(ranges, w, " ")
			for (i = 1; i <= n; i++) {
				if (split(w[i], p, "-") != 2)
					p[2] = p[1] = w[i]
				for (k = p[1] + 0; k <= p[2] + 0; k++)
					h[k] = 1
			}
			start = 0
			for (i = 1; i <= total; i++) {
				if (i < total && (i in h) == (start in h))
					continue
				printf "%d %d linear %s %d\n", start * r, (i - start) * r,
					(start in h) ? d : o, start * r
				start = i
			}
		}' >"$table"
	out=$(dmsetup create "$name" --readonly <"$table" 2>&1)
	rc=$?
	if [ $rc -eq 0 ] || dm_exists "$name"; then
		COR_DEVS+=("$name")
	fi
	[ $rc -eq 0 ] || fail "cannot create the view $name ($(wc -l <"$table") lines): $out"
	return $rc
}

# race_writers MODEL_OUT DEV ARGS...: cor-race for $RACE_SECONDS.  cor-race
# itself tolerates (and counts) blocks that mix allowed versions under a
# racing write: the VM's file-backed disks tear such reads at byte
# granularity even on a plain dm-linear device.
race_writers()
{
	local model=$1 out rc

	shift
	out=$("$COR_RACE" "$@" --seconds "$RACE_SECONDS" --model-out "$model" 2>&1)
	rc=$?
	ktap_diag "$(grep -E '^cor-race: reads' <<<"$out")"
	[ $rc -eq 0 ] && return 0
	ktap_diag "$(grep -v '^cor-race: reads' <<<"$out" | tail -n 20)"
	fail "cor-race $* exited $rc"
	return 1
}

# race_one REGION STRIPE MAX_IO WINDOW
race_one()
{
	local r=$1 stripe=$2 maxio=$3 window=$4 bpr=$(($1 / 8))
	local total=$((ORIGIN_SECTORS / $1)) cor name model h d written nh nd
	local out msg zone=$((ORIGIN_BLOCKS * 3 / 4))

	name=cor$r
	cor=$(dm_path "$name")
	model=$COR_TMP/model.$r
	# a failed subtest may have left its devices
	cor_remove_all >/dev/null 2>&1
	dm_exists "view$r" && dm_remove "view$r"
	slice_create "dest$r" 1 "$SIZE" || return
	CUR_DEST=$(dm_path "dest$r")
	# a zeroed destination: a region marked hydrated without having been
	# copied (or a sector of it) reads as zeroes
	zero_dev "$CUR_DEST" || { fail "cannot zero $CUR_DEST"; return 1; }
	zero_dev "$META" || { fail "cannot zero $META"; return 1; }
	cor_create "$name" "$ORIGIN" "$CUR_DEST" "$META" "$r" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }

	# writers and readers race over the first 3/4 of the device ...
	race_writers "$model.zone" "$cor" --blocks "$zone" --origin-seed "$SEED" \
		--readers 3 --writers 3 --stripe "$stripe" --max-io-blocks "$maxio" \
		--window "$window" --flush-every 16 --grace 60 || return
	# ... then readers alone race each other into the copies of the rest
	# (the model of the zone, widened to the whole device, never written)
	sed "s/^blocks $zone\$/blocks $ORIGIN_BLOCKS/" "$model.zone" >"$model.in"
	expect_ok "cor-race, readers only" "$COR_RACE" "$cor" --blocks "$ORIGIN_BLOCKS" \
		--origin-seed "$SEED" --readers 3 --writers 0 --seconds 2 \
		--max-io-blocks "$maxio" --window "$window" --grace 60 --no-final-verify \
		--model-in "$model.in" --model-out "$model" || return
	ktap_diag "$(grep -E '^cor-race: reads' <<<"$COR_EXPECT_OUT")"

	# the copies that the last reads started finish by themselves
	wait_idle "$name" || return
	h=$(cor_bitmap "$name" hydrated 0 "$total") || { fail "bitmap hydrated failed"; return 1; }
	d=$(cor_bitmap "$name" dirty 0 "$total") || { fail "bitmap dirty failed"; return 1; }
	nh=$(count_of "$h") nd=$(count_of "$d")
	written=$(model_regions "$model" "$bpr")
	msg="region $r: $(count_of "$written") regions written,"
	msg+=" $nh hydrated, $nd dirty of $total"
	ktap_diag "$msg"
	expect_cmp "$(count_of "$written")" -gt 0 "regions written by cor-race" || return
	expect_eq "$(ranges minus "$written" "0-$((zone / bpr - 1))")" "" \
		"(test) regions written outside the race zone" || return
	expect_eq "$d" "$written" "dirty bitmap vs the regions cor-race wrote" || return
	expect_eq "$(ranges union "$h" "$d")" "$h" "dirty regions are all hydrated" || return
	expect_cmp $((nh - nd)) -gt 0 "clean regions" || return
	expect_eq "$ST_HYDRATED $ST_DIRTY $ST_COPIES_FAILED $ST_MODE" "$nh $nd 0 rw" \
		"status hydrated, dirty, copies_failed, mode vs the bitmaps" || return

	cor_remove "$name" || return

	# the destination itself, through a view that maps every hydrated
	# region to it: the clean ones must hold the origin (version 0 in the
	# model), the dirty ones what cor-race wrote
	view_create "view$r" "$r" "$h" || return
	if ! out=$("$COR_RACE" verify "$(dm_path "view$r")" --model "$model" 2>&1); then
		ktap_diag "$out"
		fail "hydrated regions of the destination differ from the model"
	fi
	dm_remove "view$r" || fail "cannot remove view$r"
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1

	# the same metadata again: same bitmaps, same data
	cor_create "$name" "$ORIGIN" "$CUR_DEST" "$META" "$r" ||
		{ fail "re-create: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_bitmap "$name" hydrated 0 "$total")" "$h" \
		"hydrated bitmap after re-creation" ||
		return
	expect_eq "$(cor_bitmap "$name" dirty 0 "$total")" "$d" \
		"dirty bitmap after re-creation" || return
	st_read "$name"
	expect_eq "$ST_HYDRATED $ST_DIRTY" "$nh $nd" \
		"status hydrated and dirty after re-creation" ||
		return
	expect_ok "model through cor after re-creation" \
		"$COR_RACE" verify "$cor" --model "$model" ||
		return
	# that read copied every region that was left: all hydrated, dirty unchanged
	wait_idle "$name" || return
	expect_eq "$ST_HYDRATED $ST_DIRTY $ST_COPIES_FAILED" "$total $nd 0" \
		"status hydrated, dirty, copies_failed after the verify read" || return
	cor_remove "$name"
}

# 4 KiB regions: 1 block each; writes of 1..4 blocks, all whole regions
st_region_8()    { race_one 8 4 8 128; }
# 32 KiB regions (8 blocks): 8-block stripes, partial and whole-region writes
st_region_64()   { race_one 64 8 16 256; }
# 512 KiB regions (128 blocks): 32 regions, window of 4
st_region_1024() { race_one 1024 32 32 512; }

run_subtest "4 KiB regions: whole-region writes racing copy-on-read lose nothing" st_region_8
run_subtest "32 KiB regions: partial and whole-region writes racing copies lose nothing" \
	st_region_64
run_subtest "512 KiB regions: writers and readers inside a few regions lose nothing" st_region_1024

cor_test_done
