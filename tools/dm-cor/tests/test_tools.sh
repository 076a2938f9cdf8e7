#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_tools.sh: the command line contract of cor_check, cor_dump,
# cor_restore and cor_repair, on the host: no VM, no root, no dm device.
# Metadata images are regular files, made by cor_restore from hand-written
# dumps, damaged with dd or tests/cor-poke.c (which keeps checksums valid),
# plus one image the kernel wrote (fixtures/kernel-6.12.img.gz.b64, with
# its dump).  The refusal of live metadata needs a dm device: that is
# tools/testing/selftests/dm-cor/test_tools.sh.
#
# The tools are built here with AddressSanitizer and UBSan when the
# compiler can (COR_TEST_SANITIZE=0 disables that), so that any
# out-of-bounds access on bad input fails the test; COR_TOOLS_DIR=DIR tests
# the binaries in DIR instead.  Output is KTAP; the exit status is 0 only
# if every subtest passed.

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$HERE")
FORMAT_DIR=$(cd "$SRC/../../drivers/md" 2>/dev/null && pwd)
CC=${CC:-cc}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cor-tools-test.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT
export ASAN_OPTIONS=exitcode=99:detect_leaks=0
export UBSAN_OPTIONS=halt_on_error=1:exitcode=98:print_stacktrace=1
TOOL_NAMES="cor_check cor_dump cor_restore cor_repair"

echo "KTAP version 1"
echo "1..$(grep -c '^run "' "$0")"

bail()
{
	echo "Bail out! $*"
	exit 1
}

# Build
SAN=
CFLAGS_T="-O1 -g -Wall -Wextra -Werror -I$SRC -I$FORMAT_DIR"
if [ -n "$COR_TOOLS_DIR" ]; then
	BIN=$COR_TOOLS_DIR
else
	BIN=$TMP/bin
	mkdir -p "$BIN"
	if [ "${COR_TEST_SANITIZE:-1}" != 0 ] &&
	   echo 'int main(void) { return 0; }' >"$TMP/t.c" &&
	   $CC -fsanitize=address,undefined -o "$TMP/t" "$TMP/t.c" 2>/dev/null && "$TMP/t"; then
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
	fi
	for t in $TOOL_NAMES; do
		# shellcheck disable=SC2086
		$CC $CFLAGS_T $SAN -o "$BIN/$t" "$SRC/$t.c" "$SRC/cor-meta.c" ||
			bail "cannot build $t"
	done
fi
# shellcheck disable=SC2086
$CC $CFLAGS_T -o "$TMP/cor-poke" "$HERE/cor-poke.c" "$SRC/cor-meta.c" ||
	bail "cannot build cor-poke"
POKE=$TMP/cor-poke
echo "# tools: $BIN${SAN:+ (built with $SAN)}"

# KTAP subtests: run, fail, skip, diag
# shellcheck source=tools/dm-cor/tests/lib_ktap.sh
. "$HERE/lib_ktap.sh"

# t RC PATTERN TOOL ARGS...: run a tool; its exit status must be RC ("nz":
# any failure but a crash), its output (stdout and stderr, in $OUT) must
# match the extended regex PATTERN (if not empty).  A sanitizer report or a
# signal is always a failure.
t()
{
	local want=$1 pat=$2 tool=$3 rc

	shift 3
	OUT=$("$BIN/$tool" "$@" 2>&1)
	rc=$?
	RC=$rc
	if [ $rc -ge 98 ] || grep -qE 'Sanitizer|runtime error' <<<"$OUT"; then
		fail "$tool $*: crashed or a sanitizer complained (exit $rc): $OUT"
		return 1
	fi
	if [ "$want" == nz ]; then
		[ $rc -ne 0 ] || { fail "$tool $*: exit 0, expected a failure: $OUT"; return 1; }
	elif [ $rc -ne "$want" ]; then
		fail "$tool $*: exit $rc, expected $want: $OUT"
		return 1
	fi
	if [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$OUT"; then
		fail "$tool $*: output does not match '$pat': $OUT"
		return 1
	fi
	return 0
}

# t1: as t, and the output must be one line (a clear one-line message)
t1()
{
	t "$@" || return
	[ "$(wc -l <<<"$OUT")" -eq 1 ] || fail "$3: more than one line: $OUT"
}

# readers RC_CHECK RC_DUMP RC_REPAIR PATTERN FILE: the three tools that read
# metadata, on one bad input; a failed repair must not leave an output
readers()
{
	local rc_c=$1 rc_d=$2 rc_r=$3 pat=$4 f=$5

	t1 "$rc_c" "$pat" cor_check "$f" || return
	t1 "$rc_d" "$pat" cor_dump "$f" || return
	[ -z "$(head -c 1 <<<"$OUT")" ] && fail "cor_dump printed nothing"
	rm -f "$TMP/rep.out"
	t "$rc_r" "$pat" cor_repair -i "$f" -o "$TMP/rep.out" || return
	if [ "$rc_r" != 0 ] && [ "$rc_r" != 1 ] && [ "$rc_r" != 4 ] && [ -e "$TMP/rep.out" ]; then
		fail "cor_repair failed (exit $RC) but created its output"
	fi
}

# dump_bits FILE: the bitmap part of an XML dump
dump_bits()
{
	"$BIN/cor_dump" -f xml "$1" | sed -n '/<hydrated/,$p'
}

########################################################################
# Images

# 3000000 sectors in 64-sector regions: 46875 regions, two bitmap blocks,
# 10 metadata blocks.  Slot 0 (generation 3, area 1) is the active one.
cat >"$TMP/good.xml" <<'EOF'
<?xml version="1.0"?>
<!-- a hand-written dump -->
<cor_metadata version="1" uuid="00112233-4455-6677-8899-aabbccddeeff"
	      region_sectors="64" target_sectors="3000000">
  <superblock slot="0" generation="3" active_area="1"/>
  <superblock slot="1" generation="2" active_area="0"/>
  <hydrated>
    <range begin="5" length="5"/>
    <range begin="20" length="1"/>
    <range begin="32000" length="1000"/>
    <range begin="46874" length="1"/>
  </hydrated>
  <dirty>
    <range begin="7" length="1"/>
    <range begin="32600" length="100"/>
  </dirty>
</cor_metadata>
EOF
GOOD=$TMP/good.img
"$BIN/cor_restore" -q -i "$TMP/good.xml" -o "$GOOD" || bail "cannot restore the hand-written dump"
KERNEL=$TMP/kernel.img
base64 -d "$HERE/fixtures/kernel-6.12.img.gz.b64" | gunzip >"$KERNEL" ||
	bail "cannot unpack the kernel fixture"

# img NAME [SRC]: a fresh copy of an image, echoes its path
img()
{
	cp "${2:-$GOOD}" "$TMP/$1.img"
	echo "$TMP/$1.img"
}

# block offsets in good.img: sb 0, 1; area 0: H 2-3, D 4-5; area 1: H 6-7, D 8-9
# superblock field offsets
SB_FLAGS=4 SB_VERSION=16 SB_BLOCK_SECTORS=20 SB_GEN=24 SB_REGION=32 SB_TARGET=40
SB_NR_REGIONS=48 SB_BITMAP_BLOCKS=56 SB_NR_META=64 SB_AREA=72

smash()		# smash FILE BLOCK: garbage in the middle of a block, checksum stale
{
	printf 'garbage!' | dd of="$1" bs=1 seek=$(($2 * 4096 + 2000)) conv=notrunc status=none
}

########################################################################
# Subtests

st_help()
{
	local tool

	for tool in $TOOL_NAMES; do
		t 0 '^usage: '"$tool" "$tool" --help || return
		t 0 '^usage: '"$tool" "$tool" -h || return
		t 2 'usage:' "$tool" --no-such-option || return
	done
	t 2 'usage:' cor_check || return
	t 2 'usage:' cor_check a b || return
	t 2 'usage:' cor_dump || return
	t1 2 'unknown format' cor_dump -f json "$GOOD" || return
	t 2 'needed' cor_restore -i "$TMP/good.xml" || return
	t 2 'needed' cor_repair -o "$TMP/x.img" || return
	t 2 'needed' cor_repair -i "$GOOD" -o "$TMP/x.img" extra
}

st_version()
{
	local tool

	for tool in $TOOL_NAMES; do
		t1 0 "^$tool [0-9]+\.[0-9]+\.[0-9]+ \(dm-cor metadata version 1\)$" "$tool" --version ||
			return
		t1 0 "^$tool " "$tool" -V || return
	done
}

st_good()
{
	t1 0 'clean: generation 3, region 64 sectors, 1007/46875 hydrated, 101 dirty' cor_check "$GOOD" ||
		return
	t 0 '' cor_check -q "$GOOD" || return
	[ -z "$OUT" ] || fail "cor_check -q printed: $OUT"
	t 0 '5-9 20 32000-32999 46874' cor_dump "$GOOD" || return
	grep -q '^superblock 0 .*generation 3, area 1, flags 0x0 (active)$' <<<"$OUT" ||
		fail "human dump: slot 0 is not shown active: $OUT"
	t 0 '^  7 32600-32699$' cor_dump "$GOOD"
}

st_missing()
{
	readers 2 2 2 'No such file or directory' "$TMP/does-not-exist" || return
	ln -s "$TMP/nowhere" "$TMP/dangling"
	readers 2 2 2 'No such file or directory' "$TMP/dangling" || return
	t1 2 'No such file' cor_restore -i "$TMP/does-not-exist" -o "$TMP/x.img" || return
	[ -e "$TMP/x.img" ] && fail "cor_restore created its output from a missing dump"
	return 0
}

st_directory()
{
	readers 2 2 2 'directory' "$TMP" || return
	t 2 'directory|Is a dir' cor_restore -i "$TMP" -o "$TMP/x.img" || return
	t1 2 'directory' cor_restore -i "$TMP/good.xml" -o "$TMP" || return
	t1 2 'directory' cor_repair -i "$GOOD" -o "$TMP"
}

st_unreadable()
{
	local f

	if [ "$(id -u)" -ne 0 ]; then
		f=$(img unreadable)
		chmod 000 "$f"
	elif [ -e /proc/sys/vm/drop_caches ] && ! head -c 1 /proc/sys/vm/drop_caches >/dev/null 2>&1; then
		f=/proc/sys/vm/drop_caches	# write-only, even for root
	else
		skip "running as root and no unreadable file found"
		return
	fi
	readers 2 2 2 'Permission denied' "$f" || return
	t1 2 'Permission denied' cor_restore -i "$f" -o "$TMP/x.img"
}

st_char_device()
{
	readers 2 2 2 'neither a block device nor a regular file' /dev/null
}

st_empty()
{
	: >"$TMP/empty.img"
	readers 1 1 3 'too small' "$TMP/empty.img" || return
	t1 1 'empty dump' cor_restore -i "$TMP/empty.img" -o "$TMP/x.img" || return
	[ -e "$TMP/x.img" ] && fail "cor_restore created its output from an empty dump"
	return 0
}

st_tiny()
{
	head -c 100 "$GOOD" >"$TMP/tiny.img"
	readers 1 1 3 'too small' "$TMP/tiny.img" || return
	head -c 4096 "$GOOD" >"$TMP/tiny.img"
	readers 1 1 3 'too small' "$TMP/tiny.img" || return
	head -c 8191 "$GOOD" >"$TMP/tiny.img"
	readers 1 1 3 'too small' "$TMP/tiny.img"
}

st_truncated()
{
	head -c $((5 * 4096)) "$GOOD" >"$TMP/trunc.img"
	t1 1 'layout needs 10 blocks, the device has only 5' cor_check "$TMP/trunc.img" || return
	t 1 'layout needs 10 blocks' cor_dump "$TMP/trunc.img" || return
	t 3 'no usable superblock' cor_repair -i "$TMP/trunc.img" -o "$TMP/x.img" || return
	[ -e "$TMP/x.img" ] && fail "a failed repair left its output"
	# a length that is not a multiple of the block size
	head -c $((10 * 4096 - 1)) "$GOOD" >"$TMP/trunc.img"
	t1 1 'has only 9' cor_check "$TMP/trunc.img"
}

st_bad_magic()
{
	local f

	f=$(img magic)
	"$POKE" "$f" 0 8 8 0x1122334455667788 && "$POKE" "$f" 1 8 8 42 || return
	readers 1 1 3 'bad magic' "$f" || return
	# one slot only: the other one is used, as the kernel would
	f=$(img magic1)
	"$POKE" "$f" 1 8 8 42 || return
	t 0 'slot 1 is not valid \(bad magic\)' cor_check "$f"
}

st_bad_version()
{
	local f

	f=$(img version)
	"$POKE" "$f" 0 $SB_VERSION 4 2 || return
	t1 1 'unsupported metadata version 2' cor_check "$f" || return
	t1 1 'unsupported metadata version 2' cor_dump "$f" || return
	"$POKE" "$f" 1 $SB_VERSION 4 7 || return
	t 3 'rejected: unsupported metadata version 7' cor_repair -i "$f" -o "$TMP/x.img"
}

st_bad_sizes()
{
	local f field off size val pat

	while read -r field off size val pat; do
		f=$(img "size-$field")
		"$POKE" "$f" 0 "$off" "$size" "$val" || return
		t 1 "$pat" cor_check "$f" || return
		t 1 "$pat" cor_dump "$f" || return
	done <<EOF
region $SB_REGION 8 12 region size is not a power of two
region0 $SB_REGION 8 0 region size is not a power of two
region4G $SB_REGION 8 0x100000000 region size is not a power of two
target0 $SB_TARGET 8 0 length is zero
block $SB_BLOCK_SECTORS 4 16 block size 16 sectors, expected 8
nr_regions $SB_NR_REGIONS 8 46876 46876 regions do not match
bitmap_blocks $SB_BITMAP_BLOCKS 8 3 3 bitmap blocks, expected 2
layout $SB_NR_META 8 9 layout size 9 blocks, expected 10
area $SB_AREA 4 7 active area 7 is invalid
flags $SB_FLAGS 4 0x80 unknown superblock flags 0x80
EOF
}

# sizes and counts that are consistent but need far more than the device
st_past_device()
{
	local f

	f=$(img huge)
	# 2^60 sectors in 2097152-sector regions: 2^39 regions,
	# 16843009 blocks per bitmap, 67372038 blocks
	"$POKE" "$f" 0 $SB_REGION 8 2097152 && "$POKE" "$f" 0 $SB_TARGET 8 0x1000000000000000 &&
	"$POKE" "$f" 0 $SB_NR_REGIONS 8 0x8000000000 &&
	"$POKE" "$f" 0 $SB_BITMAP_BLOCKS 8 16843010 &&
	"$POKE" "$f" 0 $SB_NR_META 8 67372042 || return
	t1 1 'the layout needs 67372042 blocks, the device has only 10' cor_check "$f" || return
	t1 1 'needs 67372042 blocks' cor_dump "$f" || return
	# the older slot is fine: repair falls back to it, losing generation 3
	t 1 'POSSIBLE DATA LOSS: a newer superblock was rejected: generation 2' \
		cor_repair -i "$f" -o "$TMP/huge-fixed.img" || return
	t1 0 'clean' cor_check "$TMP/huge-fixed.img" || return
	# the largest numbers there are
	f=$(img huge2)
	"$POKE" "$f" 0 $SB_TARGET 8 0xffffffffffffffff &&
	"$POKE" "$f" 0 $SB_NR_REGIONS 8 0xffffffffffffffff &&
	"$POKE" "$f" 0 $SB_BITMAP_BLOCKS 8 0xffffffffffffffff &&
	"$POKE" "$f" 0 $SB_NR_META 8 0xffffffffffffffff && "$POKE" "$f" 0 $SB_GEN 8 0xffffffffffffffff ||
		return
	t 1 'damaged' cor_check "$f" || return
	t 1 'damaged' cor_dump "$f" || return
	t 1 'rejected' cor_repair -i "$f" -o "$TMP/x.img"
}

st_sb_csum()
{
	local f

	f=$(img csum1)
	smash "$f" 0
	# the newer slot is torn: the older one wins, exactly as in the kernel
	t 0 'slot 0 is not valid \(checksum mismatch\)' cor_check "$f" || return
	grep -q 'clean: generation 2,' <<<"$OUT" || fail "not clean at generation 2: $OUT"
	t 0 '' cor_dump "$f" || return
	grep -q '^superblock 1 .*(active)$' <<<"$OUT" || fail "slot 1 not active: $OUT"
	smash "$f" 1
	readers 1 1 3 'checksum mismatch' "$f"
}

st_bitmap_csum()
{
	local f b

	for b in 6 7 8 9; do
		f=$(img "bm$b")
		smash "$f" $b
		t 1 "bitmap block $((b % 2)) .*checksum mismatch" cor_check "$f" || return
		t 1 'checksum mismatch' cor_dump "$f" || return
		grep -q '<range' <<<"$OUT" && { fail "cor_dump dumped damaged bitmaps"; return 1; }
	done
	# the inactive area is not looked at
	f=$(img bm-inactive)
	smash "$f" 2
	t 0 clean cor_check "$f" || return
	# a valid checksum, but the block is somewhere else
	f=$(img bm-place)
	"$POKE" "$f" 6 8 8 2 || return
	t 1 'wrong kind or block number' cor_check "$f" || return
	f=$(img bm-kind)
	"$POKE" "$f" 6 4 4 1 || return
	t 1 'wrong kind or block number' cor_check "$f" || return
	# bits past the last region (46875 = 14 * 32640 ... last block word 225, bit 59)
	f=$(img bm-past)
	"$POKE" "$f" 7 $((16 + 8 * 4080 / 8 - 8)) 8 1 || return
	t 1 'bits set past the last region' cor_check "$f" || return
	# dirty but not hydrated (region 0)
	f=$(img bm-subset)
	"$POKE" "$f" 8 16 8 1 || return
	t 1 'region 0 is dirty but not hydrated' cor_check "$f" || return
	t 1 'dirty regions not hydrated' cor_dump "$f"
}

st_random()
{
	head -c 65536 /dev/urandom >"$TMP/random.img"
	readers 1 1 3 '' "$TMP/random.img" || return
	rm -f "$TMP/x.img"
	t 1 '' cor_restore -i "$TMP/random.img" -o "$TMP/x.img" || return
	[ -e "$TMP/x.img" ] && fail "cor_restore created its output from random bytes"
	return 0
}

st_zero()
{
	head -c 65536 /dev/zero >"$TMP/zero.img"
	t1 0 'all zeroes: not formatted yet' cor_check "$TMP/zero.img" || return
	t1 1 'all zeroes' cor_dump "$TMP/zero.img" || return
	t 0 'all zeroes' cor_repair -i "$TMP/zero.img" -o "$TMP/zero-out.img" || return
	t1 0 'all zeroes' cor_check "$TMP/zero-out.img"
}

st_round_trip()
{
	t 0 '' cor_dump -f xml -o "$TMP/a.xml" "$GOOD" || return
	t 0 'generation 3, 46875 regions, 1007 hydrated, 101 dirty' \
		cor_restore -i "$TMP/a.xml" -o "$TMP/b.img" || return
	t 0 '' cor_dump -f xml -o "$TMP/b.xml" "$TMP/b.img" || return
	cmp -s "$TMP/a.xml" "$TMP/b.xml" || { fail "dumps differ: $(diff "$TMP/a.xml" "$TMP/b.xml")"; return 1; }
	"$BIN/cor_dump" -f xml "$GOOD" | cmp -s - "$TMP/a.xml" || fail "-o and stdout differ"
	cmp -s <("$BIN/cor_dump" "$GOOD") <("$BIN/cor_dump" "$TMP/b.img" | sed "s|$TMP/b.img|$GOOD|") ||
		fail "human dumps differ"
	# from standard input, into an existing larger file
	head -c $((64 * 4096)) /dev/zero >"$TMP/c.img"
	"$BIN/cor_restore" -q -i - -o "$TMP/c.img" <"$TMP/a.xml" || { fail "restore from stdin"; return 1; }
	"$BIN/cor_dump" -f xml "$TMP/c.img" | cmp -s - "$TMP/a.xml" || fail "restore from stdin differs"
	t1 0 clean cor_check "$TMP/c.img" || return
	# a needs-check flag and an unused slot survive too
	cat >"$TMP/nc.xml" <<'EOF'
<cor_metadata version="1" uuid="00112233-4455-6677-8899-aabbccddeeff" region_sectors="8" target_sectors="1001" nr_regions="126" active_slot="1">
  <superblock slot="0" state="unused"/>
  <superblock slot="1" generation="18446744073709551614" active_area="0" flags="1"/>
  <hydrated count="126">
    <range begin="0" length="126"/>
  </hydrated>
  <dirty count="1">
    <range begin="125" length="1"/>
  </dirty>
</cor_metadata>
EOF
	t 0 'needs-check' cor_restore -i "$TMP/nc.xml" -o "$TMP/nc.img" || return
	"$BIN/cor_dump" -f xml "$TMP/nc.img" | cmp -s - "$TMP/nc.xml" ||
		fail "dump of a needs-check image with an unused slot differs"
}

st_round_trip_kernel()
{
	t 0 'clean: generation 3, region 64 sectors, 13/32768 hydrated, 2 dirty' cor_check "$KERNEL" ||
		return
	"$BIN/cor_dump" -f xml "$KERNEL" | cmp -s - "$HERE/fixtures/kernel-6.12.xml" ||
		{ fail "dump of the kernel image differs from fixtures/kernel-6.12.xml"; return 1; }
	t 0 '' cor_restore -i "$HERE/fixtures/kernel-6.12.xml" -o "$TMP/k2.img" || return
	"$BIN/cor_dump" -f xml "$TMP/k2.img" | cmp -s - "$HERE/fixtures/kernel-6.12.xml" ||
		fail "dump -> restore -> dump of the kernel image differs"
	# superblocks and active area identical to what the kernel wrote
	cmp -s <(head -c $((2 * 4096 + 4 * 4096)) "$KERNEL") <(head -c $((6 * 4096)) "$TMP/k2.img") ||
		fail "restored superblocks or active area differ from the kernel's bytes"
}

st_restore_bad_dumps()
{
	local n=0 line

	while IFS= read -r line; do
		n=$((n + 1))
		printf '%b\n' "$line" >"$TMP/bad$n.xml"
		rm -f "$TMP/x.img"
		t 1 "bad$n.xml:[0-9]+: " cor_restore -i "$TMP/bad$n.xml" -o "$TMP/x.img" || return
		[ -e "$TMP/x.img" ] && { fail "output created from bad dump $n: $line"; return 1; }
	done <<'EOF'
not xml at all
<cor_metadata version="1" region_sectors="64" target_sectors="3000">
<cor_metadata version="1" region_sectors="64">\n</cor_metadata>
<cor_metadata version="2" region_sectors="64" target_sectors="3000">\n</cor_metadata>
<cor_metadata version="1" region_sectors="63" target_sectors="3000">\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="-1">\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="99999999999999999999">\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000" nr_regions="3">\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" state="unused"/><superblock slot="1" state="unused"/>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="2"/><superblock slot="1" state="unused"/>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="2" generation="1" active_area="0"/>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0" colour="red"/>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" generation="2" active_area="0"/>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000" active_slot="1">\n<superblock slot="0" generation="2" active_area="0"/><superblock slot="1" generation="1" active_area="1"/>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/><superblock slot="1" state="unused"/>\n<hydrated><range begin="40" length="8"/></hydrated>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/><superblock slot="1" state="unused"/>\n<hydrated><range begin="4" length="0"/></hydrated>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/><superblock slot="1" state="unused"/>\n<hydrated><range begin="1" length="18446744073709551615"/></hydrated>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/><superblock slot="1" state="unused"/>\n<dirty><range begin="3" length="1"/></dirty>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/><superblock slot="1" state="unused"/>\n<hydrated count="2"><range begin="3" length="1"/></hydrated>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/><superblock slot="1" state="unused"/>\n<hydrated><bogus/></hydrated>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/><superblock slot="1" state="unused"/>\n<hydrated/><hydrated/>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/><superblock slot="1" state="unused"/>\n</cor_metadata>\n<extra/>
<cor_metadata version="1" region_sectors="64" target_sectors="3000" uuid="xyz">\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0" flags="2"/><superblock slot="1" state="unused"/>\n</cor_metadata>
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/><superblock slot="1" state="unused"/>\n<!-- unterminated
<cor_metadata version="1" region_sectors='64 target_sectors="3000">
<cor_metadata version="1" region_sectors="64" target_sectors="3000">\n<superblock slot="0" generation="1" active_area="0"/>text<superblock slot="1" state="unused"/>\n</cor_metadata>
EOF
	diag "$n bad dumps refused"
	# valid, but far too large for any file system here (2^60 regions)
	printf '%s\n' '<cor_metadata version="1" region_sectors="8" target_sectors="0x7000000000000000">' \
		'<superblock slot="0" generation="1" active_area="0"/>' \
		'<superblock slot="1" state="unused"/></cor_metadata>' >"$TMP/huge.xml"
	rm -f "$TMP/x.img"
	t1 2 'blocks needed, the file system has room for' cor_restore -i "$TMP/huge.xml" -o "$TMP/x.img" ||
		return
	[ -e "$TMP/x.img" ] && fail "output left behind"
	# NUL bytes
	printf '<cor_metadata\0>' >"$TMP/nul.xml"
	t1 1 'NUL' cor_restore -i "$TMP/nul.xml" -o "$TMP/x.img"
}

st_restore_small()
{
	head -c 4096 /dev/zero >"$TMP/small.img"
	t1 2 'too small: the metadata needs 10 blocks \(40960 bytes\), it has 4096 bytes' \
		cor_restore -i "$TMP/good.xml" -o "$TMP/small.img" || return
	cmp -s "$TMP/small.img" <(head -c 4096 /dev/zero) || fail "the too-small output was written"
	t 2 'too small' cor_repair -i "$GOOD" -o "$TMP/small.img" || return
	cmp -s "$TMP/small.img" <(head -c 4096 /dev/zero) || fail "the too-small output was written"
}

st_readonly_output()
{
	local ro

	if [ "$(id -u)" -ne 0 ]; then
		ro=$(img readonly)
		chmod 444 "$ro"
	elif [ -e /proc/sys/kernel/osrelease ] && ! (: >>/proc/sys/kernel/osrelease) 2>/dev/null; then
		ro=/proc/sys/kernel/osrelease	# read-only, even for root
	else
		skip "running as root and no read-only file found"
		return
	fi
	t1 2 'cannot open for writing' cor_restore -i "$TMP/good.xml" -o "$ro" || return
	t1 2 'cannot open for writing' cor_repair -i "$GOOD" -o "$ro" || return
	t1 2 'cannot open for writing' cor_check --clear-needs-check-flag "$ro" || return
	# read-only inputs are fine for reading
	cp "$GOOD" "$TMP/ro-in.img"
	chmod 444 "$TMP/ro-in.img"
	t 0 clean cor_check "$TMP/ro-in.img" || return
	t 0 '' cor_dump "$TMP/ro-in.img" || return
	t 0 '' cor_repair -i "$TMP/ro-in.img" -o "$TMP/ro-out.img"
}

# repair_ok RC PATTERN IMAGE: repair must exit RC, say PATTERN, and write
# metadata cor_check accepts; its dump is left in $TMP/fixed.xml
repair_ok()
{
	rm -f "$TMP/fixed.img"
	t "$1" "$2" cor_repair -i "$3" -o "$TMP/fixed.img" || return
	diag "$OUT"
	t1 0 clean cor_check "$TMP/fixed.img" || return
	"$BIN/cor_dump" -f xml "$TMP/fixed.img" | sed -n '/<hydrated/,$p' >"$TMP/fixed.xml"
}

# ranges_are KIND "b+l ...": the ranges of a bitmap in $TMP/fixed.xml
ranges_are()
{
	local got

	got=$(sed -n "/<$1/,/<\/$1>/p" "$TMP/fixed.xml" |
	      sed -n 's/.*begin="\([0-9]*\)" length="\([0-9]*\)".*/\1+\2/p' | tr '\n' ' ')
	[ "${got% }" == "$2" ] || fail "$1 ranges after repair: '${got% }', expected '$2'"
}

st_repair_clean()
{
	repair_ok 0 'generation 5, 46875 regions, 1007 hydrated, 101 dirty' "$GOOD" || return
	[ "$(cat "$TMP/fixed.xml")" == "$(dump_bits "$GOOD")" ] || fail "bitmaps changed"
	repair_ok 0 '' "$KERNEL" || return
	[ "$(cat "$TMP/fixed.xml")" == "$(dump_bits "$KERNEL")" ] || fail "kernel bitmaps changed"
	t 2 'are the same' cor_repair -i "$GOOD" -o "$GOOD" || return
	ln -s "$GOOD" "$TMP/good-link.img"
	t 2 'are the same' cor_repair -i "$GOOD" -o "$TMP/good-link.img"
}

st_repair_torn_sb()
{
	local f

	f=$(img r-torn)
	smash "$f" 0
	# generation 2 (area 0) is what the kernel would load: no loss
	repair_ok 0 'slot 0: checksum mismatch: ignored' "$f"
}

st_repair_hydrated()
{
	local f

	f=$(img r-hyd)
	smash "$f" 6
	repair_ok 4 'given up, no data at risk: regions 0-32639 .*hydrated bitmap block is damaged' "$f" ||
		return
	# block 0 (regions 0-32639) keeps its dirty regions only
	ranges_are hydrated "7+1 32600+400 46874+1" && ranges_are dirty "7+1 32600+100"
}

st_repair_dirty()
{
	local f

	f=$(img r-dirty)
	smash "$f" 9
	repair_ok 4 'regions 32640-46874 .*every hydrated region is marked dirty' "$f" || return
	ranges_are hydrated "5+5 20+1 32000+1000 46874+1" &&
	# block 1 (regions 32640-46874): every hydrated region is dirty
	ranges_are dirty "7+1 32600+400 46874+1"
}

st_repair_fallback()
{
	local f

	# both blocks of index 0 in the active area: area 0 is used there
	f=$(img r-fb)
	smash "$f" 6
	smash "$f" 8
	repair_ok 1 'POSSIBLE DATA LOSS: regions 0-32639 .*other area' "$f" || return
	ranges_are hydrated "5+5 20+1 32000+1000 46874+1" || return
	# block 0 from the other area, all dirty; block 1 exact
	ranges_are dirty "5+5 20+1 32000+700" || return
	# the kernel's image: its other area is the empty generation 2
	f=$(img r-kfb "$KERNEL")
	smash "$f" 2
	smash "$f" 4
	repair_ok 1 'POSSIBLE DATA LOSS: regions 0-32639' "$f" || return
	ranges_are hydrated "32700+1 32767+1"
}

st_repair_lost()
{
	local f b

	f=$(img r-lost)
	for b in 2 4 6 8; do
		smash "$f" $b
	done
	repair_ok 1 'POSSIBLE DATA LOSS: regions 0-32639 .*no valid hydrated or dirty block in either area' "$f" ||
		return
	ranges_are hydrated "32640+360 46874+1" && ranges_are dirty "32640+60"
}

st_repair_subset()
{
	local f

	f=$(img r-subset)
	"$POKE" "$f" 8 16 8 1 || return
	repair_ok 4 'dirty regions not marked hydrated are marked hydrated' "$f" || return
	ranges_are hydrated "0+1 5+5 20+1 32000+1000 46874+1"
}

st_repair_bad_sb()
{
	local f

	f=$(img r-version)
	"$POKE" "$f" 0 $SB_VERSION 4 9 || return
	repair_ok 1 'rejected: unsupported metadata version 9' "$f" || return
	# generation 2's area 0 holds the same bitmaps in good.img
	[ "$(cat "$TMP/fixed.xml")" == "$(dump_bits "$GOOD")" ] || fail "bitmaps changed"
	f=$(img r-none)
	smash "$f" 0
	smash "$f" 1
	rm -f "$TMP/x.img"
	t 3 'no usable superblock' cor_repair -i "$f" -o "$TMP/x.img" || return
	[ -e "$TMP/x.img" ] && fail "output created"
	return 0
}

st_needs_check()
{
	local f before

	f=$(img nc)
	"$POKE" "$f" 0 $SB_FLAGS 4 1 || return
	t1 1 'needs-check flag is set' cor_check "$f" || return
	t 0 '^needs check +yes' cor_dump "$f" || return
	t 0 'flags="1"' cor_dump -f xml "$f" || return
	t 0 'needs-check flag cleared: generation 4 written to superblock slot 1' \
		cor_check --clear-needs-check-flag "$f" || return
	t1 0 'clean: generation 4' cor_check "$f" || return
	t 0 '^superblock 1 .*generation 4, area 1, flags 0x0 \(active\)' cor_dump "$f" || return
	[ "$(dump_bits "$f")" == "$(dump_bits "$GOOD")" ] || fail "bitmaps changed"
	t 0 'not set: nothing to clear' cor_check --clear-needs-check-flag "$f" || return
	# damaged metadata keeps its flag
	f=$(img nc-bad)
	"$POKE" "$f" 0 $SB_FLAGS 4 1 || return
	smash "$f" 7
	before=$(sha256sum <"$f")
	t 1 'not clearing the needs-check flag' cor_check --clear-needs-check-flag "$f" || return
	[ "$(sha256sum <"$f")" == "$before" ] || fail "damaged metadata was written"
	# repair clears it too
	f=$(img nc-rep)
	"$POKE" "$f" 0 $SB_FLAGS 4 1 || return
	repair_ok 0 'needs-check flag was set' "$f"
}

run "--help and bad usage" st_help
run "--version" st_version
run "a good image: check, dump" st_good
run "missing input or dangling symlink" st_missing
run "directory as input or output" st_directory
run "unreadable input" st_unreadable
run "character device input" st_char_device
run "empty input" st_empty
run "tiny input" st_tiny
run "truncated image" st_truncated
run "bad superblock magic" st_bad_magic
run "bad version (valid checksum)" st_bad_version
run "bad sizes and fields (valid checksum)" st_bad_sizes
run "sizes and counts past the device" st_past_device
run "superblock checksum mismatch" st_sb_csum
run "bitmap checksum, location, past-the-end and subset damage" st_bitmap_csum
run "random bytes" st_random
run "all-zero (unformatted) image" st_zero
run "dump -> restore -> dump is byte-identical" st_round_trip
run "kernel-written image: check, dump, restore round trip" st_round_trip_kernel
run "cor_restore refuses bad dumps, writes nothing" st_restore_bad_dumps
run "cor_restore and cor_repair refuse a too-small output" st_restore_small
run "read-only output refused, read-only input read" st_readonly_output
run "repair of clean metadata changes nothing" st_repair_clean
run "repair of a torn superblock" st_repair_torn_sb
run "repair of a damaged hydrated block" st_repair_hydrated
run "repair of a damaged dirty block" st_repair_dirty
run "repair from the other area" st_repair_fallback
run "repair when both areas are damaged" st_repair_lost
run "repair of dirty-not-hydrated regions" st_repair_subset
run "repair of a bad or missing superblock" st_repair_bad_sb
run "needs-check flag: refused, cleared, repaired" st_needs_check

echo "# Totals: pass:$((CNT - NFAIL - NSKIP)) fail:$NFAIL skip:$NSKIP"
[ $NFAIL -eq 0 ]
