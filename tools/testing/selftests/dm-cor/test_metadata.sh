#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_metadata.sh: metadata write errors and hostile metadata.
#
# Metadata write errors (see "Metadata errors" in dm-cor.rst).  The metadata
# device is a dm-linear device that is reloaded (suspend --nolockfs, load,
# resume) to fail:
#  - only its bitmap blocks (a linear segment over the two superblocks, an
#    "error" segment over the rest): the commit fails, the needs-check
#    superblock can still be written, so the device switches to "ro" with a
#    dm event and a kernel log line, and the FUA write that asked for the
#    commit fails.  In ro mode hydrated regions are read and written on the
#    destination, unhydrated ones are read from the origin and not copied,
#    writes to them, all discards and all flushes fail with EIO (the
#    failed commit's marks are in core only, so no flush can be kept),
#    hydration and prefetch are refused, and a reloaded table stays ro,
#    its flushes failing too.  Once the
#    device is removed the needs-check flag is on disk: a load is refused
#    with a one-line reason until cor_check --clear-needs-check-flag clears
#    it (cor_repair also produces loadable metadata), after which the
#    device loads in rw mode with the state of the last commit and every
#    write acknowledged before the fault (and the ro-mode writes to
#    hydrated regions) reads back.
#  - entirely (an "error" table): the needs-check superblock cannot be
#    written either, so the device switches to "fail" and every bio fails
#    with EIO; a reloaded table starts in ro mode.  The flag is then NOT on
#    disk (it could not be written): the metadata holds the last good
#    commit and loads again as it is.
#
# Hostile metadata: starting from metadata the kernel wrote, each field of
# the newest superblock, both superblock slots, the bitmap blocks of the
# active area and the size of the device are damaged (keeping the checksums
# valid, as tools/dm-cor/tests/cor-poke.c does, so that the checks behind
# them are reached).  Every load is refused with one
# "device-mapper: table: <dev>: cor: <reason>" line and the expected
# reason, leaves no device, and cor_check exits 1.  Damage to the older
# superblock slot or to the inactive area does not matter (the newest valid
# superblock wins, the first commit rewrites the inactive area whole); a
# newest slot with a bad checksum is taken for a torn write: the older slot
# is used, with its older state.  A newest superblock with generation
# 2^64-1 must be refused, or the next commit (whose generation wraps to 0)
# must survive a reload.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

cor_test_init
cor_require_cmd blkdiscard od gawk cmp
TOOLS=
for t in "$COR_TOOLS_DIR" "$COR_REPO_ROOT/tools/dm-cor" /dm-cor/tools/dm-cor; do
	[ -n "$t" ] && [ -x "$t/cor_check" ] && [ -x "$t/cor_repair" ] &&
		[ -x "$t/cor_dump" ] && { TOOLS=$t; break; }
done
[ -z "$TOOLS" ] && command -v cor_check >/dev/null 2>&1 &&
	TOOLS=$(dirname "$(command -v cor_check)")
[ -n "$TOOLS" ] || ktap_skip_all "the dm-cor tools are not built (make -C tools/dm-cor)"
ktap_plan 9

SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors (32 KiB): 512 regions, one block per bitmap
MSECT=2048			# metadata slices: 1 MiB

cor_setup_devs 16M 16M 1M || cor_bail "cannot create the test devices"
# the cor devices are created one after the other: they share $DEST
slice_create meta2 2 1M && slice_create meta3 2 1M || cor_bail "cannot create the test devices"
for m in meta2 meta3; do
	zero_dev "$(dm_path $m)" || cor_bail "cannot zero $m"
done
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
TOTAL=$((ORIGIN_SECTORS / REGION))
MODEL=$COR_TMP/model
DATA=$COR_TMP/data
ORIGIN_MODEL=$COR_TMP/origin_model
"$COR_PATTERN" gen 0 "$ORIGIN_BLOCKS" "$SEED" >"$ORIGIN_MODEL" && cp "$ORIGIN_MODEL" "$MODEL" ||
	cor_bail "cannot build the model"
"$COR_PATTERN" gen 0 64 $((SEED + 1)) --pattern-version 1 >"$DATA" ||
	cor_bail "cannot build the data"

# The metadata devices of the fault tests: dm-linear over META and meta2
dm_create mlin "0 $MSECT linear $META 0" && dm_create mlin2 "0 $MSECT linear $(dm_path meta2) 0" ||
	cor_bail "cannot create the metadata devices: $COR_LAST_OUTPUT"
MLIN=$(dm_path mlin)
MLIN2=$(dm_path mlin2)

########################################################################
# Damaging metadata images
#
# Every damaged image is made from one good image by one gawk run (process
# creation is what costs time in a TCG guest), which does what
# tools/dm-cor/tests/cor-poke.c does (and checks against it on the host):
# it stores bytes and fixes the block's checksum (CRC32C from ~0 without
# the final inversion over bytes 4-4095, xor 0x0c0f5eed for a superblock,
# 0x0b17b17b for a bitmap block).  An image is declared with img NAME, then
# damaged with any of
#   pk BLOCK OFFSET SIZE VALUE  store VALUE (little-endian), fix the checksum
#   sc BLOCK OFFSET             flip bits of a byte, checksum left wrong
#   rn BLOCK COUNT              random bytes over COUNT blocks
#   zb BLOCK                    zero a block
#   cb SRC DST                  block SRC of the good image over block DST

declare -a IMG_OPS=()
declare -A IMG_IDX=()
NIMG=0

img()
{
	IMG_IDX[$1]=$NIMG
	NIMG=$((NIMG + 1))
}

_op()
{
	IMG_OPS[NIMG - 1]+="$*;"
}

pk()
{
	local v=$(($4)) i s="p $1 $2"

	for ((i = 0; i < $3; i++)); do
		s+=" $(((v >> (8 * i)) & 255))"
	done
	_op "$s"
}

sc() { _op s "$1" "$2"; }
rn() { _op r "$1" "$2"; }
zb() { _op z "$1"; }
cb() { _op c "$1" "$2"; }

# make_images GOOD OUT DIR: OUT holds the images, NBLK blocks each, in
# order; DIR holds them as files 0.img, 1.img, ...
make_images()
{
	local i

	for ((i = 0; i < NIMG; i++)); do
		echo "${IMG_OPS[i]}"
	done >"$COR_TMP/img.ops"
	mkdir -p "$3" || return
	od -An -v -tu1 -N $((NBLK * 4096)) "$1" | LC_ALL=C gawk -b -v nblk="$NBLK" \
		-v seed="$SEED" -v sbx=202333933 -v bmx=186102139 -v dir="$3" '
		function byte(i) { return (i in m) ? m[i] : g[i] }
		function fix(b,   c, i, o, k) {
			c = 4294967295
			o = b * 4096
			for (i = 4; i < 4096; i++)
				c = xor(T[and(xor(c, byte(o + i)), 255)], rshift(c, 8))
			c = xor(c, b < 2 ? sbx : bmx)
			for (k = 0; k < 4; k++) {
				m[o + k] = and(c, 255)
				c = rshift(c, 8)
			}
		}
		BEGIN {
			srand(seed)
			for (i = 0; i < 256; i++) {
				C[i] = sprintf("%c", i)
				c = i
				for (k = 0; k < 8; k++)
					c = and(c, 1) ? xor(rshift(c, 1), 2197175160) : rshift(c, 1)
				T[i] = c
			}
		}
		FNR == NR { for (i = 1; i <= NF; i++) g[n++] = $i; next }
		FNR == 1 {
			for (b = 0; b < nblk; b++) {
				s = ""
				for (i = 0; i < 4096; i++)
					s = s C[g[b * 4096 + i]]
				G[b] = s
			}
		}
		{
			delete m
			delete t
			nops = split($0, ops, ";")
			for (j = 1; j <= nops; j++) {
				na = split(ops[j], a, " ")
				if (a[1] == "p") {
					for (k = 4; k <= na; k++)
						m[a[2] * 4096 + a[3] + k - 4] = a[k] + 0
					fix(a[2])
				} else if (a[1] == "s") {
					i = a[2] * 4096 + a[3]
					m[i] = xor(byte(i), 90)
				} else if (a[1] == "r") {
					for (i = a[2] * 4096; i < (a[2] + a[3]) * 4096; i++)
						m[i] = int(rand() * 256)
				} else if (a[1] == "z") {
					for (i = 0; i < 4096; i++)
						m[a[2] * 4096 + i] = 0
				} else if (a[1] == "c") {
					for (i = 0; i < 4096; i++)
						m[a[3] * 4096 + i] = g[a[2] * 4096 + i]
				}
			}
			for (i in m)
				t[int(i / 4096)] = 1
			f = dir "/" (FNR - 1) ".img"
			for (b = 0; b < nblk; b++) {
				if (!(b in t)) {
					s = G[b]
				} else {
					s = ""
					for (i = 0; i < 4096; i++)
						s = s C[byte(b * 4096 + i)]
				}
				printf "%s", s
				printf "%s", s >f
			}
			close(f)
		}' /dev/stdin "$COR_TMP/img.ops" >"$2"
}

# le_field IMAGE BLOCK OFFSET SIZE: an unsigned little-endian field
le_field()
{
	od -An -tu"$4" -j $(($2 * 4096 + $3)) -N "$4" "$1" | tr -d ' '
}

########################################################################
# Helpers

# event_nr NAME: the device's dm event counter
event_nr()
{
	dmsetup info "$(dm_name "$1")" 2>/dev/null | sed -n 's/^Event number: *//p'
}

# klog_mark: a marker in the kernel log; klog_since_mark: what follows it
klog_mark()
{
	KMARK_N=$((KMARK_N + 1))
	KMARK="dm-cor-selftest: $COR_TEST_NAME mark $$ $KMARK_N $RANDOM"
	echo "$KMARK" >/dev/kmsg
}

klog_since_mark()
{
	dmesg | awk -v m="$KMARK" 'f { print } index($0, m) { f = 1 }'
}

# cor_reasons LOG: the reasons of the "device-mapper: table: ...: cor: "
# lines of a kernel log, one a line, without the errno dm core appends
cor_reasons()
{
	grep -E 'device-mapper: table: [^ ]+: cor: ' <<<"$1" |
		sed -E 's/.*device-mapper: table: [^ ]+: cor: //; s/ \((-?[A-Z0-9]+)\)$//'
}

# dd_write_sync SRC SRC_SECTOR DEV SECTOR NR: an O_DIRECT|O_SYNC write (FUA,
# or a write and a flush): it completes with the result of a commit
dd_write_sync()
{
	local len=$(($5 * 512))

	dd if="$1" of="$3" bs="$len" skip=$(($2 * 512)) seek=$(($4 * 512)) count="$len" \
		iflag=skip_bytes,count_bytes,fullblock oflag=direct,sync,seek_bytes \
		conv=notrunc status=none
}

# fsync_dev DEV: a flush (fsync of the block device)
fsync_dev()
{
	sync "$1"
}

# state NAME: "hydrated bitmap / dirty bitmap"
state()
{
	echo "$(cor_bitmap "$1" hydrated 0 "$TOTAL") / $(cor_bitmap "$1" dirty 0 "$TOTAL")"
}

# expect_refused WHAT REASON NAME TABLE: "dmsetup create" must fail with
# exactly one kernel line giving REASON, and leave no device
expect_refused()
{
	local what=$1 want=$2 name=$3 table=$4 log reasons n

	klog_mark
	if dm_create "$name" "$table"; then
		fail "$what: the table was accepted, must be refused ($want)"
		dm_remove "$name"
		return 1
	fi
	log=$(klog_since_mark)
	reasons=$(cor_reasons "$log")
	n=$(grep -c . <<<"$reasons")
	if dm_exists "$name"; then
		fail "$what: a refused create left device $(dm_name "$name")"
		dm_remove "$name"
		return 1
	fi
	[ "$n" -eq 1 ] ||
		{ fail "$what: $n 'table: ...: cor:' lines in the kernel log: $reasons"; return 1; }
	expect_eq "$reasons" "$want" "$what: kernel reason"
}

# expect_check_rc WHAT RC DEV: cor_check exits RC (its output as diagnostics
# when it does not)
expect_check_rc()
{
	local out rc

	out=$("$TOOLS/cor_check" "$3" 2>&1)
	rc=$?
	COR_CHECK_OUT=$out
	[ "$rc" -eq "$2" ] && return 0
	ktap_diag "$out"
	fail "$1: cor_check exited $rc, expected $2"
}

# needs_check DEV: cor_dump's "needs check" line (yes/no)
needs_check()
{
	"$TOOLS/cor_dump" "$1" 2>&1 | awk '/^needs check/ { print $3 }'
}

########################################################################
# A. Metadata write errors

TABLE_A=$(cor_table "$ORIGIN" "$DEST" "$MLIN" "$REGION")
COR_A=$(dm_path ca)

st_ro_switch()
{
	local e0 log out

	zero_dev "$MLIN" || { fail "cannot zero $MLIN"; return 1; }
	cor_create ca "$ORIGIN" "$DEST" "$MLIN" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	# regions 0-3 CLEAN, 10 written whole, 12 written partly: committed
	expect_dev_matches_file "read of regions 0-3" "$COR_A" 0 $((4 * REGION)) "$MODEL" ||
		return
	dd_write "$DATA" 0 "$COR_A" $((10 * REGION)) "$REGION" &&
	dd_write "$DATA" 64 "$COR_A" $((12 * REGION + 8)) 8 ||
		{ fail "writes before the fault failed"; return 1; }
	model_write "$MODEL" "$DATA" 0 $((10 * REGION)) "$REGION"
	model_write "$MODEL" "$DATA" 64 $((12 * REGION + 8)) 8
	wait_hydrated ca 6 || return
	out=$(fsync_dev "$COR_A" 2>&1) || { fail "flush before the fault: $out"; return 1; }
	expect_eq "$(state ca)" "0-3 10 12 / 10 12" "state before the fault" || return

	# the bitmap blocks fail, the superblocks do not
	e0=$(event_nr ca)
	klog_mark
	dm_reload mlin "0 16 linear $META 0
16 $((MSECT - 16)) error" --nolockfs || return
	# a FUA write to unhydrated region 20: its commit fails, so does it
	expect_io_error "FUA write to region 20 with the bitmap blocks failing" \
		dd_write_sync "$DATA" 128 "$COR_A" $((20 * REGION)) "$REGION" || return
	expect_eq "$(cor_status_field ca mode)" ro "mode after the failed commit" || return
	expect_cmp "$(event_nr ca)" -gt "$e0" "dm event number after the switch to ro" || return
	log=$(klog_since_mark)
	ktap_diag "kernel log:" "$(grep 'cor:' <<<"$log")"
	grep -qE 'cor: .*metadata commit failed: error = -5' <<<"$log" ||
		{ fail "no kernel log line for the failed commit"; return 1; }
	grep -qE 'cor: .*switching to ro mode' <<<"$log" ||
		{ fail "no kernel log line for the switch to ro mode"; return 1; }
	! grep -q 'cannot set the needs-check flag' <<<"$log" ||
		fail "the needs-check superblock was not written although the superblocks work"
}

st_ro_mode()
{
	local h0 c0 st0 out

	dm_exists ca && [ "$(cor_status_field ca mode)" == ro ] ||
		{ fail "no cor device in ro mode"; return 1; }
	# region 20 was marked in core before the commit failed: it is read
	# from the destination, which holds the failed write's data
	st0="0-3 10 12 20 / 10 12 20"
	expect_eq "$(state ca)" "$st0" "state in ro mode" || return
	expect_dev_matches_file "region 20 (the failed FUA write)" \
		"$COR_A" $((20 * REGION)) "$REGION" "$DATA" 128 || return
	h0=$(cor_status_field ca hydrated)
	c0=$(cor_status_field ca copies_done)
	# reads of hydrated regions: the destination
	expect_dev_matches_file "ro: regions 0-15" "$COR_A" 0 $((16 * REGION)) "$MODEL" || return
	# reads of unhydrated regions: the origin, and no copy
	expect_dev_matches_file "ro: partial read of region 30" \
		"$COR_A" $((30 * REGION + 8)) 8 "$MODEL" &&
	expect_dev_matches_file "ro: regions 31-40" \
		"$COR_A" $((31 * REGION)) $((10 * REGION)) "$MODEL" || return
	sleep 1
	expect_eq "$(cor_status_fields ca hydrated hydrating copies_done)" "$h0 0 $c0" \
		"ro: hydrated hydrating copies_done after cold reads (no copies)" || return
	# a write to a DIRTY region (10) works; one to a CLEAN region (1)
	# would need a dirty bit, which cannot be committed: EIO
	dd_write "$DATA" 240 "$COR_A" $((10 * REGION + 4)) 4 ||
		{ fail "ro: a write to dirty region 10 failed"; return 1; }
	model_write "$MODEL" "$DATA" 240 $((10 * REGION + 4)) 4
	expect_io_error "ro: write to clean region 1" \
		dd_write "$DATA" 200 "$COR_A" $((1 * REGION + 16)) 16 || return
	expect_dev_matches_file "ro: regions 0-15 after the writes" \
		"$COR_A" 0 $((16 * REGION)) "$MODEL" || return
	# writes to unhydrated regions and all discards fail
	expect_io_error "ro: whole-region write to unhydrated region 40" \
		dd_write "$DATA" 300 "$COR_A" $((40 * REGION)) "$REGION" &&
	expect_io_error "ro: partial write to unhydrated region 41" \
		dd_write "$DATA" 300 "$COR_A" $((41 * REGION + 8)) 8 &&
	expect_io_error "ro: discard of unhydrated region 50" \
		blkdiscard -f -o $((50 * REGION * 512)) -l $((REGION * 512)) "$COR_A" &&
	expect_io_error "ro: discard of hydrated region 2" \
		blkdiscard -f -o $((2 * REGION * 512)) -l $((REGION * 512)) "$COR_A" || return
	# flushes fail: region 20's marks never reached the disk, so a flush
	# cannot promise that the writes before it survive a crash (dd's
	# O_SYNC write is a FUA write followed by a flush: the FUA path is
	# checked only together with the flush)
	expect_io_error "ro: flush" fsync_dev "$COR_A" &&
	expect_io_error "ro: FUA write to dirty region 10" \
		dd_write_sync "$DATA" 240 "$COR_A" $((10 * REGION + 4)) 4 || return
	# no background hydration, no prefetch
	expect_fail "ro: hydration start" cor_message ca hydration start &&
	expect_fail "ro: prefetch" cor_message ca prefetch 0 "$REGION" || return
	expect_eq "$(state ca)" "$st0" "ro: state (no bit set: dirty bits not updated)" || return
	expect_eq "$(cor_status_fields ca hydrated hydrating mode)" "$h0 0 ro" \
		"ro: hydrated hydrating mode at the end" || return
	# a reloaded table starts in ro mode: the metadata failed
	dm_reload ca "$TABLE_A" || return
	expect_eq "$(cor_status_field ca mode)" ro "mode of the reloaded table" || return
	expect_io_error "ro: flush after the reload" fsync_dev "$COR_A" || return
	expect_dev_matches_file "ro: regions 0-15 after the reload" \
		"$COR_A" 0 $((16 * REGION)) "$MODEL"
}

st_needs_check()
{
	local out rc

	dm_exists ca || { fail "no cor device"; return 1; }
	dm_reload mlin "0 $MSECT linear $META 0" --nolockfs || return
	cor_remove ca || return
	expect_eq "$(needs_check "$MLIN")" yes "needs check (cor_dump) after the ro switch" ||
		{ ktap_diag "$("$TOOLS/cor_dump" "$MLIN" 2>&1)"; return 1; }
	expect_check_rc "flagged metadata" 1 "$MLIN" || return
	grep -q 'needs-check flag is set' <<<"$COR_CHECK_OUT" ||
		{ fail "cor_check does not name the needs-check flag: $COR_CHECK_OUT"; return 1; }
	expect_refused "load of flagged metadata" \
		"Metadata needs checking: run cor_check and cor_repair" ca "$TABLE_A" || return
	# cor_repair gives up nothing and writes loadable metadata
	out=$("$TOOLS/cor_repair" -i "$MLIN" -o "$COR_TMP/repaired.img" 2>&1)
	rc=$?
	ktap_diag "cor_repair: exit $rc: $out"
	expect_eq "$rc" 0 "cor_repair exit status" || return
	expect_check_rc "cor_repair's output" 0 "$COR_TMP/repaired.img" || return
	expect_eq "$(needs_check "$COR_TMP/repaired.img")" no \
		"needs check in cor_repair's output" || return
	# cor_check --clear-needs-check-flag makes it loadable again
	expect_ok "cor_check --clear-needs-check-flag" \
		"$TOOLS/cor_check" --clear-needs-check-flag "$MLIN" || return
	ktap_diag "$COR_EXPECT_OUT"
	expect_check_rc "cleared metadata" 0 "$MLIN" || return
	cor_create ca "$ORIGIN" "$DEST" "$MLIN" "$REGION" ||
		{ fail "load after clearing the flag: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_status_field ca mode)" rw "mode after clearing the flag" || return
	# the last commit: region 20 (whose commit failed) is unhydrated again
	expect_eq "$(state ca)" "0-3 10 12 / 10 12" "state after clearing the flag" || return
	expect_dev_matches_file "whole device after clearing the flag" \
		"$COR_A" 0 "$ORIGIN_SECTORS" "$MODEL" || return
	# and it works: a write, a flush, a commit
	dd_write_sync "$DATA" 128 "$COR_A" $((20 * REGION)) "$REGION" ||
		{ fail "FUA write to region 20 after clearing the flag"; return 1; }
	model_write "$MODEL" "$DATA" 128 $((20 * REGION)) "$REGION"
	expect_eq "$(cor_status_field ca mode)" rw "mode after a commit" || return
	wait_quiet ca || return
	cor_remove ca
}

st_fail_mode()
{
	local dev table e0 log out m2=$COR_TMP/model2

	dev=$(dm_path cb)

	cp "$ORIGIN_MODEL" "$m2" || return
	table=$(cor_table "$ORIGIN" "$DEST" "$MLIN2" "$REGION")
	cor_create cb "$ORIGIN" "$DEST" "$MLIN2" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	expect_dev_matches_file "read of regions 0-1" "$dev" 0 $((2 * REGION)) "$m2" || return
	dd_write "$DATA" 0 "$dev" $((5 * REGION)) "$REGION" ||
		{ fail "write of region 5"; return 1; }
	model_write "$m2" "$DATA" 0 $((5 * REGION)) "$REGION"
	wait_hydrated cb 3 || return
	out=$(fsync_dev "$dev" 2>&1) || { fail "flush before the fault: $out"; return 1; }

	# the whole metadata device fails: the needs-check superblock too
	e0=$(event_nr cb)
	klog_mark
	dm_reload mlin2 "0 $MSECT error" --nolockfs || return
	expect_io_error "FUA write to region 6 with the metadata device failing" \
		dd_write_sync "$DATA" 128 "$dev" $((6 * REGION)) "$REGION" || return
	expect_eq "$(cor_status_field cb mode)" fail "mode after the failed commit" || return
	expect_cmp "$(event_nr cb)" -gt "$e0" "dm event number after the switch to fail" ||
		return
	log=$(klog_since_mark)
	ktap_diag "kernel log:" "$(grep 'cor:' <<<"$log")"
	grep -qE 'cor: .*metadata commit failed' <<<"$log" &&
	grep -qE 'cor: .*cannot set the needs-check flag' <<<"$log" &&
	grep -qE 'cor: .*switching to fail mode' <<<"$log" ||
		{ fail "kernel log lines for the failed commit and fail mode missing"; return 1; }
	# every bio fails
	expect_io_error "fail: read of hydrated region 0" \
		dd_read "$dev" 0 "$REGION" "$COR_TMP/r" &&
	expect_io_error "fail: read of dirty region 5" \
		dd_read "$dev" $((5 * REGION)) 8 "$COR_TMP/r" &&
	expect_io_error "fail: read of unhydrated region 100" \
		dd_read "$dev" $((100 * REGION)) 8 "$COR_TMP/r" &&
	expect_io_error "fail: write to hydrated region 1" \
		dd_write "$DATA" 300 "$dev" $((1 * REGION)) 8 &&
	expect_io_error "fail: write to unhydrated region 101" \
		dd_write "$DATA" 300 "$dev" $((101 * REGION)) "$REGION" &&
	expect_io_error "fail: discard of region 0" \
		blkdiscard -f -o 0 -l $((REGION * 512)) "$dev" &&
	expect_io_error "fail: flush" fsync_dev "$dev" || return
	expect_fail "fail: hydration start" cor_message cb hydration start || return
	# a reloaded table starts in ro mode: hydrated regions read again
	dm_reload cb "$table" || return
	expect_eq "$(cor_status_field cb mode)" ro "mode of the reloaded table" || return
	expect_dev_matches_file "reloaded (ro): regions 0-1 and 5" "$dev" 0 $((6 * REGION)) "$m2" &&
	expect_dev_matches_file "reloaded (ro): unhydrated region 100" \
		"$dev" $((100 * REGION)) "$REGION" "$m2" || return
	expect_io_error "reloaded (ro): write to unhydrated region 101" \
		dd_write "$DATA" 300 "$dev" $((101 * REGION)) "$REGION" || return

	# the metadata device recovers: no needs-check flag could be written,
	# so the last good commit is on disk and loads as it is
	dm_reload mlin2 "0 $MSECT linear $(dm_path meta2) 0" --nolockfs || return
	cor_remove cb || return
	expect_eq "$(needs_check "$MLIN2")" no \
		"needs check after fail mode (the flag could not be written)" || return
	ktap_diag "fail mode: the needs-check flag could not be written; the metadata" \
		"holds the last good commit and loads without cor_check"
	expect_check_rc "metadata after fail mode" 0 "$MLIN2" || return
	cor_create cb "$ORIGIN" "$DEST" "$MLIN2" "$REGION" ||
		{ fail "load after fail mode: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_status_field cb mode)" rw "mode after fail mode" || return
	expect_eq "$(state cb)" "0-1 5 / 5" "state after fail mode (the last commit)" || return
	expect_dev_matches_file "whole device after fail mode" \
		"$dev" 0 "$ORIGIN_SECTORS" "$m2" || return
	wait_quiet cb || return
	cor_remove cb
}

# The new table of a reload is built while the old one is live; the old
# table's commit fails after that (the bitmap blocks fail): the new table
# must start in ro mode, not rw, and fail flushes
st_reload_commit_fails()
{
	local dev table e0 log out m4=$COR_TMP/model4

	dev=$(dm_path cd)
	cp "$ORIGIN_MODEL" "$m4" || return
	zero_dev "$MLIN2" || { fail "cannot zero $MLIN2"; return 1; }
	table=$(cor_table "$ORIGIN" "$DEST" "$MLIN2" "$REGION")
	cor_create cd "$ORIGIN" "$DEST" "$MLIN2" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	dm_reload mlin2 "0 16 linear $(dm_path meta2) 0
16 $((MSECT - 16)) error" --nolockfs || return
	out=$(printf '%s\n' "$table" | dmsetup load "$(dm_name cd)" 2>&1) ||
		{ fail "load of the new table: $out"; return 1; }
	# a mark only in core, committed by the old table (periodically or at
	# its suspend), which fails
	dd_write "$DATA" 0 "$dev" $((7 * REGION)) "$REGION" ||
		{ fail "write of region 7"; return 1; }
	model_write "$m4" "$DATA" 0 $((7 * REGION)) "$REGION"
	e0=$(event_nr cd)
	klog_mark
	out=$(dmsetup resume "$(dm_name cd)" 2>&1) || { fail "resume: $out"; return 1; }
	expect_eq "$(cor_status_field cd mode)" ro "mode of the new table" || return
	log=$(klog_since_mark)
	ktap_diag "kernel log:" "$(grep 'cor:' <<<"$log")"
	expect_io_error "new table (ro): flush" fsync_dev "$dev" &&
	expect_io_error "new table (ro): write to unhydrated region 8" \
		dd_write "$DATA" 64 "$dev" $((8 * REGION)) "$REGION" || return
	expect_dev_matches_file "new table (ro): regions 0-15" \
		"$dev" 0 $((16 * REGION)) "$m4" || return
	expect_cmp "$(event_nr cd)" -gt "$e0" "dm event number after the resume" || return
	grep -qE 'cor: .*switching to ro mode' <<<"$log" ||
		{ fail "no kernel log line for the switch to ro mode"; return 1; }

	# the flag is on disk; cleared, the last commit (nothing) loads
	dm_reload mlin2 "0 $MSECT linear $(dm_path meta2) 0" --nolockfs || return
	cor_remove cd || return
	expect_eq "$(needs_check "$MLIN2")" yes "needs check after the failed reload" || return
	expect_ok "cor_check --clear-needs-check-flag" \
		"$TOOLS/cor_check" --clear-needs-check-flag "$MLIN2"
}

########################################################################
# B. Hostile metadata

MH=$(dm_path meta3)
TABLE_H=$(cor_table "$ORIGIN" "$DEST" "$MH" "$REGION")
GOOD=$COR_TMP/good.img
IMAGES=$COR_TMP/images
IMGDIR=$COR_TMP/img.d
NBLK=6				# 2 + 4 * 1 blocks

# make_good_image: metadata the kernel wrote, two commits: the older one
# with regions 0-3 CLEAN and 8 DIRTY, the newest one with 9 DIRTY as well;
# sets NEW OLD (slots), AREA (active), HB DB (active bitmap blocks) and
# XHB (the inactive area's first block)
make_good_image()
{
	local dev out g0 g1

	dev=$(dm_path ch)
	cor_create ch "$ORIGIN" "$DEST" "$MH" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	dd_read "$dev" 0 $((4 * REGION)) "$COR_TMP/r" &&
	dd_write "$DATA" 0 "$dev" $((8 * REGION)) "$REGION" ||
		{ fail "I/O for the first commit failed"; return 1; }
	wait_hydrated ch 5 || return
	out=$(fsync_dev "$dev" 2>&1) || { fail "flush: $out"; return 1; }
	dd_write_sync "$DATA" 64 "$dev" $((9 * REGION)) "$REGION" ||
		{ fail "FUA write of region 9"; return 1; }
	model_write "$MODEL3" "$DATA" 0 $((8 * REGION)) "$REGION"
	model_write "$MODEL3" "$DATA" 64 $((9 * REGION)) "$REGION"
	expect_eq "$(state ch)" "0-3 8-9 / 8-9" "state of the good image" || return
	cor_remove ch || return
	dd if="$MH" of="$GOOD" bs=4096 count="$NBLK" iflag=direct status=none ||
		{ fail "cannot copy $MH"; return 1; }
	expect_check_rc "the good image" 0 "$GOOD" || return
	g0=$(le_field "$GOOD" 0 24 8)
	g1=$(le_field "$GOOD" 1 24 8)
	if [ "$g0" -gt "$g1" ]; then NEW=0; else NEW=1; fi
	OLD=$((NEW ^ 1))
	AREA=$(le_field "$GOOD" $NEW 72 4)
	HB=$((2 + AREA * 2))
	DB=$((HB + 1))
	XHB=$((2 + (AREA ^ 1) * 2))
	ktap_diag "good image: slot 0 generation $g0, slot 1 generation $g1," \
		"newest slot $NEW, active area $AREA (blocks $HB $DB)"
}

# put_image NAME: an image onto the metadata device
put_image()
{
	dd if="$IMAGES" of="$MH" bs=4096 skip=$((IMG_IDX[$1] * NBLK)) count="$NBLK" \
		oflag=direct conv=notrunc status=none ||
		{ fail "cannot write image $1 to $MH"; return 1; }
}

# Hostile cases: hc DESC REASON CHECK_RC declares one (an image of the
# same name), the damage follows.  The load must be refused for REASON,
# cor_check must exit CHECK_RC.
declare -a HC_DESC=() HC_WANT=() HC_RC=()

hc()
{
	HC_DESC+=("$1")
	HC_WANT+=("$2")
	HC_RC+=("$3")
	img "$1"
}

SB_BAD="Metadata device is neither zeroed nor valid dm-cor metadata"
GEOM="Metadata superblock geometry is inconsistent"
BM_BAD="Metadata bitmap block checksum or location mismatch"
PAST="Metadata bitmap has bits set past the last region"

declare_cases()
{
	local b

	hc "superblocks: bad magic, both slots" "$SB_BAD" 1
	for b in 0 1; do pk $b 8 8 0x314253524f434d45; done
	hc "superblocks: checksum mismatch, both slots" "$SB_BAD" 1
	sc 0 200; sc 1 200
	hc "superblocks: random bytes in both slots" "$SB_BAD" 1
	rn 0 2
	hc "version 2" "Unsupported metadata version" 1
	pk $NEW 16 4 2
	hc "version 0" "Unsupported metadata version" 1
	pk $NEW 16 4 0
	hc "unknown flag 0x2" "Unknown metadata superblock flags" 1
	pk $NEW 4 4 2
	hc "unknown flag 0x80000000" "Unknown metadata superblock flags" 1
	pk $NEW 4 4 0x80000001
	hc "needs-check flag" "Metadata needs checking: run cor_check and cor_repair" 1
	pk $NEW 4 4 1
	hc "block_sectors 16" "Unsupported metadata block size" 1
	pk $NEW 20 4 16
	hc "block_sectors 0" "Unsupported metadata block size" 1
	pk $NEW 20 4 0
	hc "region_sectors 128 (the table says 64)" "Region size differs from the metadata" 1
	pk $NEW 32 8 128
	hc "region_sectors 96 (not a power of two)" "Region size differs from the metadata" 1
	pk $NEW 32 8 96
	hc "region_sectors 0" "Region size differs from the metadata" 1
	pk $NEW 32 8 0
	hc "region_sectors 2^62" "Region size differs from the metadata" 1
	pk $NEW 32 8 0x4000000000000000
	hc "target_sectors 16384 (the table says 32768)" \
		"Device length differs from the metadata" 1
	pk $NEW 40 8 16384
	hc "target_sectors 2^64-1" "Device length differs from the metadata" 1
	pk $NEW 40 8 0xffffffffffffffff
	hc "nr_regions 513" "$GEOM" 1
	pk $NEW 48 8 513
	hc "nr_regions 0" "$GEOM" 1
	pk $NEW 48 8 0
	hc "nr_regions 2^63" "$GEOM" 1
	pk $NEW 48 8 0x8000000000000000
	hc "bitmap_blocks 2" "$GEOM" 1
	pk $NEW 56 8 2
	hc "bitmap_blocks 0" "$GEOM" 1
	pk $NEW 56 8 0
	hc "nr_metadata_blocks 2^40 (past the device)" "$GEOM" 1
	pk $NEW 64 8 0x10000000000
	hc "nr_metadata_blocks 5" "$GEOM" 1
	pk $NEW 64 8 5
	hc "active_area 2" "$GEOM" 1
	pk $NEW 72 4 2
	hc "active_area 2^32-1" "$GEOM" 1
	pk $NEW 72 4 0xffffffff
	# valid metadata of another table: refused by the kernel; cor_check,
	# which does not know the table, finds nothing wrong
	hc "valid metadata of a table with region_sectors 128 (256 regions)" \
		"Region size differs from the metadata" 0
	pk $NEW 32 8 128; pk $NEW 48 8 256
	hc "valid metadata of a table of 16384 sectors (256 regions)" \
		"Device length differs from the metadata" 0
	pk $NEW 40 8 16384; pk $NEW 48 8 256
	NSB_CASES=${#HC_DESC[@]}

	hc "hydrated block: checksum mismatch" "$BM_BAD" 1
	sc $HB 100
	hc "dirty block: checksum mismatch" "$BM_BAD" 1
	sc $DB 4095
	hc "hydrated block: zeroed" "$BM_BAD" 1
	zb $HB
	hc "hydrated block: a copy of the superblock" "$BM_BAD" 1
	cb $NEW $HB
	hc "hydrated block: the dirty block (valid, wrong kind and place)" "$BM_BAD" 1
	cb $DB $HB
	hc "hydrated block: kind 1" "$BM_BAD" 1
	pk $HB 4 4 1
	hc "dirty block: kind 0" "$BM_BAD" 1
	pk $DB 4 4 0
	hc "hydrated block: kind 7" "$BM_BAD" 1
	pk $HB 4 4 7
	hc "hydrated block: blocknr of the other area" "$BM_BAD" 1
	pk $HB 8 8 $XHB
	hc "dirty block: blocknr 2^63" "$BM_BAD" 1
	pk $DB 8 8 0x8000000000000000
	hc "hydrated block: region 512 (past the last)" "$PAST" 1
	pk $HB $((16 + 8 * 8)) 8 1
	hc "hydrated block: its last bit (region 32639)" "$PAST" 1
	pk $HB $((16 + 509 * 8)) 8 0x8000000000000000
	hc "dirty block: region 575 (past the last)" "$PAST" 1
	pk $DB $((16 + 8 * 8)) 8 0x8000000000000000
	hc "dirty block: region 511 dirty, not hydrated" \
		"Metadata marks regions dirty that are not hydrated" 1
	pk $DB $((16 + 7 * 8)) 8 0x8000000000000000
	hc "dirty block: region 5 dirty, not hydrated" \
		"Metadata marks regions dirty that are not hydrated" 1
	pk $DB 16 8 $(((1 << 8) | (1 << 9) | (1 << 5)))

	# for st_slots
	img good
	img older_csum; sc $OLD 200
	img older_version; pk $OLD 16 4 7
	img inactive_random; rn $XHB 2
	img newest_csum; sc $NEW 200
	img generation_max; pk $NEW 24 8 0xffffffffffffffff
}

# dm_name_exists NAME: a dm device of that name exists (no process started)
dm_name_exists()
{
	local f n

	for f in /sys/block/dm-*/dm/name; do
		[ -r "$f" ] && read -r n <"$f" && [ "$n" == "$1" ] && return 0
	done
	return 1
}

# run_cases FIRST END: the hostile cases FIRST..END-1.  Per case only dd
# and dmsetup run; cor_check checks the image files meanwhile, and the
# kernel log is read once at the end.  Failures are collected in BAD_CASES.
run_cases()
{
	local i name crc out log reasons n pid tag="cor-hc-$$-$RANDOM"
	declare -A bad=()

	name=$(dm_name ch)
	(
		for ((i = $1; i < $2; i++)); do
			"$TOOLS/cor_check" "$IMGDIR/${IMG_IDX[${HC_DESC[i]}]}.img" \
				>"$IMGDIR/$i.out" 2>&1
			echo $? >"$IMGDIR/$i.rc"
		done
	) &
	pid=$!
	for ((i = $1; i < $2; i++)); do
		put_image "${HC_DESC[i]}" || return
		echo "dm-cor-selftest: $tag case $i" >/dev/kmsg
		if dmsetup create "$name" --table "$TABLE_H" >/dev/null 2>&1; then
			fail "${HC_DESC[i]}: the table was accepted"
			COR_DEVS+=("$name")
			dm_remove ch
			bad[$i]=1
		elif dm_name_exists "$name"; then
			fail "${HC_DESC[i]}: the refused create left device $name"
			COR_DEVS+=("$name")
			dm_remove ch
			bad[$i]=1
		fi
	done
	wait "$pid"
	for ((i = $1; i < $2; i++)); do
		read -r crc <"$IMGDIR/$i.rc"
		if [ "$crc" != "${HC_RC[i]}" ]; then
			ktap_diag "$(cat "$IMGDIR/$i.out")"
			fail "${HC_DESC[i]}: cor_check exited $crc, expected ${HC_RC[i]}"
			bad[$i]=1
		fi
	done
	# case number and reason of each "table: ...: cor:" line
	log=$(dmesg | gawk -v tag="$tag" '
		index($0, "dm-cor-selftest: " tag " case ") {
			cur = $NF
			next
		}
		cur != "" && /device-mapper: table: [^ ]+: cor: / {
			sub(/.*device-mapper: table: [^ ]+: cor: /, "")
			sub(/ \(-?[A-Z0-9]+\)$/, "")
			print cur "\t" $0
		}')
	for ((i = $1; i < $2; i++)); do
		reasons=$(grep -P "^$i\t" <<<"$log" | cut -f2-)
		n=$(grep -c . <<<"$reasons")
		if [ "$n" -ne 1 ] || [ "$reasons" != "${HC_WANT[i]}" ]; then
			fail "${HC_DESC[i]}: kernel reason(s) '$reasons', expected '${HC_WANT[i]}'"
			bad[$i]=1
		fi
	done
	for i in "${!bad[@]}"; do
		BAD_CASES+=("${HC_DESC[i]}")
	done
	ktap_diag "cases $1-$(($2 - 1)): $(($2 - $1)) refused as expected but ${#bad[@]}"
}

st_hostile_superblocks()
{
	BAD_CASES=()
	MODEL3=$COR_TMP/model3
	cp "$ORIGIN_MODEL" "$MODEL3" || return
	make_good_image || return
	declare_cases
	make_images "$GOOD" "$IMAGES" "$IMGDIR" ||
		{ fail "cannot build the damaged images"; return 1; }
	expect_eq "$(stat -c %s "$IMAGES")" $((NIMG * NBLK * 4096)) "size of the images" ||
		return
	run_cases 0 "$NSB_CASES"
	[ ${#BAD_CASES[@]} -eq 0 ]
}

st_hostile_bitmaps()
{
	local trunc nerr

	BAD_CASES=()
	[ -s "$IMAGES" ] || { fail "no damaged images"; return 1; }
	run_cases "$NSB_CASES" "${#HC_DESC[@]}"
	# truncated metadata devices: the good image on a shorter device
	put_image good || return
	for trunc in $((8 * (NBLK - 1))) 8 1; do
		dm_create mtrunc "0 $trunc linear $MH 0" ||
			{ fail "cannot create the truncated device: $COR_LAST_OUTPUT"; return 1; }
		nerr=${#SUBTEST_ERRORS[@]}
		expect_refused "metadata device of $trunc sectors" "Metadata device too small" \
			ch "$(cor_table "$ORIGIN" "$DEST" "$(dm_path mtrunc)" "$REGION")"
		expect_check_rc "metadata device of $trunc sectors" 1 "$(dm_path mtrunc)"
		[ ${#SUBTEST_ERRORS[@]} -eq "$nerr" ] || BAD_CASES+=("truncated to $trunc")
		dm_remove mtrunc || { fail "cannot remove mtrunc"; return 1; }
	done
	[ ${#BAD_CASES[@]} -eq 0 ]
}

# loads IMAGE STATE: the image on the device loads (rw) with STATE
loads()
{
	put_image "$1" || return
	cor_create ch "$ORIGIN" "$DEST" "$MH" "$REGION" ||
		{ fail "$1: the load was refused: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(cor_status_field ch mode)" rw "$1: mode" &&
	expect_eq "$(state ch)" "$2" "$1: state"
}

st_slots()
{
	local dev log

	dev=$(dm_path ch)
	[ -s "$IMAGES" ] || { fail "no damaged images"; return 1; }
	# the older slot damaged: the newest wins, nothing is lost
	loads older_csum "0-3 8-9 / 8-9" || return
	cor_remove ch || return
	expect_check_rc "older slot: checksum mismatch" 0 "$MH" || return
	grep -q "slot $OLD is not valid" <<<"$COR_CHECK_OUT" ||
		{ fail "cor_check does not mention the bad older slot: $COR_CHECK_OUT"; return 1; }
	loads older_version "0-3 8-9 / 8-9" || return
	cor_remove ch || return
	# the inactive area damaged: ignored, and the first commit rewrites it
	# whole (a read changes only the hydrated bitmap)
	loads inactive_random "0-3 8-9 / 8-9" || return
	expect_dev_matches_file "read of region 30" "$dev" $((30 * REGION)) 8 "$MODEL3" || return
	wait_hydrated ch 7 || return
	fsync_dev "$dev" || { fail "flush after the inactive area was damaged"; return 1; }
	cor_remove ch || return
	expect_check_rc "inactive area rewritten by the first commit" 0 "$MH" || return
	cor_create ch "$ORIGIN" "$DEST" "$MH" "$REGION" ||
		{ fail "reload after the first commit: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(state ch)" "0-3 8-9 30 / 8-9" "state after the first commit" || return
	expect_dev_matches_file "data after the first commit" \
		"$dev" 0 "$ORIGIN_SECTORS" "$MODEL3" || return
	cor_remove ch || return
	# the newest slot damaged (a torn superblock write looks the same):
	# the older slot is used, with the older commit's state, so region 9,
	# written and flushed before the newest commit, is UNHYDRATED again
	klog_mark
	loads newest_csum "0-3 8 / 8" || return
	log=$(klog_since_mark)
	grep -qiE 'cor.*(superblock|slot)' <<<"$log" ||
		ktap_diag "the kernel used the older superblock without a log line:" \
			"the newest commit (region 9 written and flushed) is silently lost"
	expect_dev_matches_file "newest slot damaged: region 9 reads the origin" \
		"$dev" $((9 * REGION)) "$REGION" "$ORIGIN_MODEL" || return
	cor_remove ch || return
	# the good image loads with both commits, for the epilogue's check
	loads good "0-3 8-9 / 8-9" || return
	cor_remove ch
}

st_generation_max()
{
	local dev

	dev=$(dm_path ch)
	[ -s "$IMAGES" ] || { fail "no damaged images"; return 1; }
	# a newest superblock with the highest generation there is: the load
	# is refused, or the next commit (the generation wraps to 0 in the
	# other slot) survives a reload
	put_image generation_max || return
	if ! cor_create ch "$ORIGIN" "$DEST" "$MH" "$REGION"; then
		ktap_diag "generation 2^64-1 refused: $COR_LAST_OUTPUT"
		loads good "0-3 8-9 / 8-9" || return
		cor_remove ch
		return
	fi
	dd_write_sync "$DATA" 0 "$dev" $((40 * REGION)) "$REGION" ||
		{ fail "FUA write of region 40"; return 1; }
	cor_remove ch || return
	ktap_diag "after one commit:" "$("$TOOLS/cor_dump" "$MH" 2>&1 | grep '^superblock')"
	cor_create ch "$ORIGIN" "$DEST" "$MH" "$REGION" ||
		{ fail "reload: $COR_LAST_OUTPUT"; return 1; }
	expect_eq "$(state ch)" "0-3 8-9 40 / 8-9 40" \
		"state after a flushed write and a reload" || return
	cor_remove ch
}

run_subtest "bitmap writes fail: ro mode, dm event, log lines, the FUA write fails" st_ro_switch
run_subtest "ro mode as in the rst: dirty-region I/O works, no copies, EIO otherwise, reload ro" \
	st_ro_mode
run_subtest "needs-check on disk: load refused; cor_repair, cor_check --clear-...; data intact" \
	st_needs_check
run_subtest "metadata device fails: fail mode, every bio EIO, reload ro, last commit loads" \
	st_fail_mode
run_subtest "reload whose old table's commit fails: the new table starts ro, flushes fail" \
	st_reload_commit_fails
run_subtest "hostile superblocks: refused with one reason line, cor_check detects" \
	st_hostile_superblocks
run_subtest "hostile bitmap blocks and truncated devices: refused, cor_check detects" \
	st_hostile_bitmaps
run_subtest "superblock slots: older slot or inactive area damaged loads; newest falls back" \
	st_slots
run_subtest "newest superblock with generation 2^64-1: refused, or the next commit survives" \
	st_generation_max

cor_test_done
