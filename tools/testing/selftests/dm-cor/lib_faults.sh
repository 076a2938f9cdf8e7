# SPDX-License-Identifier: GPL-2.0
#
# lib_faults.sh: helpers shared by the discard, read-only, fault, flush and
# status tests.  Sourced after lib.sh, whose conventions it follows (names
# with $COR_PREFIX, every device tracked for the epilogue, assertions that
# record a failure and return 1).

# dm_create_lines NAME TABLE_LINES [dmsetup create options]: like dm_create,
# for a table of several lines (given with embedded newlines, read by
# dmsetup from stdin)
dm_create_lines()
{
	local name out rc

	name=$(dm_name "$1")
	shift
	local table=$1

	shift
	out=$(printf '%s\n' "$table" | dmsetup create "$name" "$@" 2>&1)
	rc=$?
	COR_LAST_OUTPUT=$(tr "\n" " " <<<"$out")
	if [ $rc -eq 0 ] || dm_exists "$name"; then
		COR_DEVS+=("$name")
	fi
	return $rc
}

# dm_reload NAME TABLE_LINES [--nolockfs]: suspend, load and resume a device
# (any table, lines separated by newlines)
dm_reload()
{
	local name out

	name=$(dm_name "$1")
	out=$(dmsetup suspend ${3:+"$3"} "$name" 2>&1) ||
		{ fail "suspend $name: $out"; return 1; }
	if ! out=$(printf '%s\n' "$2" | dmsetup load "$name" 2>&1); then
		fail "load $name: $out"
		dmsetup resume "$name" >/dev/null 2>&1
		return 1
	fi
	out=$(dmsetup resume "$name" 2>&1) ||
		{ fail "resume $name: $out"; return 1; }
}

# flakey_table DEV SECTORS up|drop_writes|error_writes
flakey_table()
{
	case "$3" in
	up) echo "0 $2 flakey $1 0 3600 0" ;;
	*) echo "0 $2 flakey $1 0 0 3600 1 $3" ;;
	esac
}

# flakey_create NAME DEV MODE: a dm-flakey device over all of DEV
flakey_create()
{
	dm_create "$1" "$(flakey_table "$2" "$(dev_sectors "$2")" "$3")" ||
		{ fail "cannot create flakey $1 ($3): $COR_LAST_OUTPUT"; return 1; }
}

# flakey_switch NAME DEV MODE: reload a flakey device in another mode,
# without flushing anything on the way (--nolockfs)
flakey_switch()
{
	dm_reload "$1" "$(flakey_table "$2" "$(dev_sectors "$2")" "$3")" --nolockfs
}

# Discard counters of a block device (sysfs stat fields 12 and 14)
dev_discard_ios()     { dev_stat_field "$1" 12; }
dev_discard_sectors() { dev_stat_field "$1" 14; }

# discard DEV SECTOR NR_SECTORS: one BLKDISCARD ioctl (-f: without it,
# blkdiscard probes the device for signatures, which reads (and so
# hydrates) regions all over a cor device)
discard()
{
	local out

	out=$(blkdiscard -f -o $(($2 * 512)) -l $(($3 * 512)) "$1" 2>&1) ||
		{ fail "discard of $1 sectors $2+$3 failed: $out"; return 1; }
}

# zeroout DEV SECTOR NR_SECTORS: one BLKZEROOUT ioctl (blkdiscard -z)
zeroout()
{
	local out

	out=$(blkdiscard -f -z -o $(($2 * 512)) -l $(($3 * 512)) "$1" 2>&1) ||
		{ fail "zeroout of $1 sectors $2+$3 failed: $out"; return 1; }
}

# model_zero MODEL SECTOR NR_SECTORS
model_zero()
{
	dd if=/dev/zero of="$1" bs=1M seek=$(($2 * 512)) count=$(($3 * 512)) \
		iflag=count_bytes oflag=seek_bytes conv=notrunc status=none
}

# model_copy MODEL SECTOR NR_SECTORS DEV: the model takes what DEV holds
# (for undefined data, e.g. discarded ranges)
model_copy()
{
	dd_read "$4" "$2" "$3" "$COR_TMP/model_copy" &&
		dd if="$COR_TMP/model_copy" of="$1" bs=1M seek=$(($2 * 512)) oflag=seek_bytes \
			conv=notrunc status=none
}

# expect_devs_equal WHAT DEV1 DEV2 SECTOR NR: two devices hold the same data
# in a range
expect_devs_equal()
{
	local what=$1 a=$2 b=$3 s=$4 n=$5 out

	dd_read "$a" "$s" "$n" "$COR_TMP/eq.a" ||
		{ fail "$what: read of $a sectors $s+$n failed"; return 1; }
	dd_read "$b" "$s" "$n" "$COR_TMP/eq.b" ||
		{ fail "$what: read of $b sectors $s+$n failed"; return 1; }
	out=$(cmp "$COR_TMP/eq.a" "$COR_TMP/eq.b" 2>&1) ||
		{ fail "$what: $a and $b differ in sectors $s+$n: $out"; return 1; }
}

# expect_io_error WHAT cmd args...: the command must fail with an I/O
# error (EIO), not any other error
expect_io_error()
{
	local what=$1 out rc

	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		fail "$what: '$*' succeeded but must fail with EIO"
		return 1
	fi
	if ! grep -q 'Input/output error' <<<"$out"; then
		fail "$what: '$*' failed, but not with EIO: $out"
		return 1
	fi
	return 0
}

# Status line without the start/length prefix (what the target prints)
cor_status_line()
{
	cor_status "$1" | cut -d' ' -f4-
}

# wait_quiet NAME: wait until no copy is in flight
wait_quiet()
{
	wait_status "$1" hydrating -eq 0
}

# klog_count: number of kernel log lines so far
klog_count()
{
	dmesg 2>/dev/null | wc -l
}

# klog_new_since N: kernel log lines after the first N
klog_new_since()
{
	dmesg 2>/dev/null | tail -n +"$(($1 + 1))"
}

# blocks_differing FILE_A FILE_B [BLOCK_BYTES]: 0-based numbers of the
# blocks (default 4 KiB) in which two equally long files differ, one a line
blocks_differing()
{
	cmp -l "$1" "$2" 2>/dev/null | awk -v bs="${3:-4096}" '
		{ b = int(($1 - 1) / bs); if (b != last) { print b; last = b } }
		BEGIN { last = -1 }'
}

# file_block FILE BLOCK OUT: one 4 KiB block of a file
file_block()
{
	dd if="$1" of="$3" bs=4096 skip="$2" count=1 status=none
}

# sector_origins FILE OLD NEW BLOCK: for each 512-byte sector of a block,
# "o" (as OLD), "n" (as NEW), "b" (both) or "-" (neither)
sector_origins()
{
	local i out=

	for ((i = 0; i < 8; i++)); do
		dd if="$1" of="$COR_TMP/so.f" bs=512 skip=$(($4 * 8 + i)) count=1 status=none
		dd if="$2" of="$COR_TMP/so.o" bs=512 skip=$(($4 * 8 + i)) count=1 status=none
		dd if="$3" of="$COR_TMP/so.n" bs=512 skip=$(($4 * 8 + i)) count=1 status=none
		if cmp -s "$COR_TMP/so.f" "$COR_TMP/so.o"; then
			cmp -s "$COR_TMP/so.f" "$COR_TMP/so.n" && out="${out}b" || out="${out}o"
		else
			cmp -s "$COR_TMP/so.f" "$COR_TMP/so.n" && out="${out}n" || out="${out}-"
		fi
	done
	echo "$out"
}

# expect_blocks_either WHAT FILE OLD NEW: every 4 KiB block of FILE equals
# the same block of OLD or of NEW (FILE is expected to be mostly OLD)
expect_blocks_either()
{
	local what=$1 f=$2 old=$3 new=$4 d1 b bad=() n=0 all msg

	[ "$(stat -c %s "$f")" == "$(stat -c %s "$old")" ] ||
		{ fail "$what: $f has the wrong size"; return 1; }
	d1=$(blocks_differing "$f" "$old")
	for b in $d1; do
		n=$((n + 1))
		file_block "$f" "$b" "$COR_TMP/either.f"
		file_block "$new" "$b" "$COR_TMP/either.n"
		cmp -s "$COR_TMP/either.f" "$COR_TMP/either.n" || bad+=("$b")
	done
	all=$([ ${#bad[@]} -eq 0 ] && echo yes || echo no)
	ktap_diag "$what: $n blocks differ from the old data, all hold the new data: $all"
	[ ${#bad[@]} -eq 0 ] && return 0
	for b in "${bad[@]:0:4}"; do
		msg="block $b (sectors $((b * 8))-$((b * 8 + 7))): per sector o=old n=new b=both"
		msg+=" -=neither: $(sector_origins "$f" "$old" "$new" "$b")"
		ktap_diag "$msg"
		ktap_diag \
			"  holds: $("$COR_PATTERN" describe "$f" "$b" --buffered 2>&1 | head -n 3)"
	done
	fail "$what: ${#bad[@]} blocks hold neither the old nor the new data: ${bad[*]:0:8}"
	return 1
}
