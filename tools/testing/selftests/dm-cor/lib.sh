#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# lib.sh: sourced by every dm-cor selftest.
#
# A test looks like:
#
#   . "$(dirname "$0")/lib.sh"
#   cor_test_init                      # prerequisites (else exit 4), traps
#   ktap_plan 3                        # the test's own subtests
#   cor_setup_devs 32M 32M 4M          # $ORIGIN $DEST $META (dm-linear slices)
#   stamp_origin 1234                  # pattern + checksum for the epilogue
#   st_one() { ...; expect_eq "$a" "$b" "what" || return; ... }
#   run_subtest "name" st_one
#   ...
#   cor_test_done                      # epilogue (also run by the EXIT trap)
#
# The epilogue adds four subtests to the plan (removal and leak check,
# metadata check, origin checksum, kernel log) and sets the exit status:
# 0 pass, 1 fail, 4 skip.  Everything a test creates is named with
# $COR_PREFIX so that leaks are found and cleaned up.
#
# Environment: COR_DISKS (scratch disks, default /dev/vda../dev/vdd),
# COR_PREFIX (default cortest-), COR_WAIT_TIMEOUT (seconds, default 20),
# COR_TOOLS_DIR (where cor_check lives), COR_MODULE (a dm-cor.ko to insmod
# when modprobe cannot find one), COR_KEEP_TMP=1 keeps the temp directory.

# Variables set here are the API of the tests that source this file.
# shellcheck disable=SC2034
COR_SELFTEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COR_REPO_ROOT=$(cd "$COR_SELFTEST_DIR/../../../.." 2>/dev/null && pwd)
COR_PATTERN=${COR_PATTERN:-$COR_SELFTEST_DIR/cor-pattern}
COR_RACE=${COR_RACE:-$COR_SELFTEST_DIR/cor-race}
COR_PREFIX=${COR_PREFIX:-cortest-}
COR_DISKS=${COR_DISKS:-/dev/vda /dev/vdb /dev/vdc /dev/vdd}
COR_WAIT_TIMEOUT=${COR_WAIT_TIMEOUT:-20}
COR_TEST_NAME=${COR_TEST_NAME:-$(basename "$0" .sh)}
[ -e /run/udev/control ] || export DM_DISABLE_UDEV=1

# Kernel log lines that fail any test.
# (dm core's complaints about a target leaking or mismatching device
# references are bugs of the target too.)
COR_KLOG_BAD='BUG:|WARNING:|Oops|general protection fault|possible recursive locking'
COR_KLOG_BAD+='|circular locking|INFO: task .* blocked|UBSAN:|kernel BUG at|suspicious RCU'
COR_KLOG_BAD+='|BUG .* remaining|KASAN:|Out of memory: Killed|dm_put_device call missing'
COR_KLOG_BAD+='|not in table devices list'

# Subtests added by the epilogue.
COR_EPILOGUE_SUBTESTS=4

########################################################################
# KTAP output

KTAP_CNT=0
KTAP_PASS=0
KTAP_FAIL=0
KTAP_SKIP=0

ktap_diag()
{
	local line

	# every line of every argument as a "# " diagnostic
	printf '%s\n' "$@" | while IFS= read -r line; do
		printf '# %s\n' "$line"
	done
}

ktap_plan()
{
	KTAP_PLANNED=$(($1 + COR_EPILOGUE_SUBTESTS))
	echo "1..$KTAP_PLANNED"
}

ktap_ok()
{
	KTAP_CNT=$((KTAP_CNT + 1))
	KTAP_PASS=$((KTAP_PASS + 1))
	echo "ok $KTAP_CNT $1"
}

ktap_fail()
{
	KTAP_CNT=$((KTAP_CNT + 1))
	KTAP_FAIL=$((KTAP_FAIL + 1))
	[ -n "$2" ] && ktap_diag "$1: $2"
	echo "not ok $KTAP_CNT $1"
}

ktap_skip()
{
	KTAP_CNT=$((KTAP_CNT + 1))
	KTAP_SKIP=$((KTAP_SKIP + 1))
	echo "ok $KTAP_CNT $1 # SKIP $2"
}

# The whole test cannot run: "1..0 # SKIP reason", exit 4.
ktap_skip_all()
{
	echo "1..0 # SKIP $*"
	COR_SKIP_ALL=1
	exit 4
}

# Abort the test (setup failed beyond repair); the epilogue still runs.
cor_bail()
{
	echo "Bail out! $*"
	COR_BAILED=1
	exit 1
}

########################################################################
# Subtests and assertions
#
# A subtest is a shell function run in the test's shell.  Assertions record
# a failure reason, print it as a diagnostic and return 1, so subtests
# write "expect_eq ... || return".  A subtest fails when any assertion
# failed or it returns non-zero; "subtest_skip reason; return" skips it.

SUBTEST_ERRORS=()
SUBTEST_SKIP=

fail()
{
	SUBTEST_ERRORS+=("$*")
	ktap_diag "FAIL: $*"
	return 1
}

subtest_skip()
{
	SUBTEST_SKIP="$*"
	return 4
}

run_subtest()
{
	local name=$1 rc t0=$SECONDS

	shift
	SUBTEST_ERRORS=()
	SUBTEST_SKIP=
	"$@"
	rc=$?
	ktap_diag "$name: $((SECONDS - t0))s"
	if [ -n "$SUBTEST_SKIP" ]; then
		ktap_skip "$name" "$SUBTEST_SKIP"
	elif [ ${#SUBTEST_ERRORS[@]} -gt 0 ]; then
		ktap_fail "$name" "${SUBTEST_ERRORS[0]}"
	elif [ "$rc" -ne 0 ]; then
		ktap_fail "$name" "returned $rc"
	else
		ktap_ok "$name"
	fi
}

expect_eq()
{
	[ "$1" == "$2" ] || fail "$3: expected '$2', got '$1'"
}

expect_ne()
{
	[ "$1" != "$2" ] || fail "$3: got '$1', expected anything else"
}

expect_num()
{
	[[ "$1" =~ ^[0-9]+$ ]] || fail "$2: '$1' is not a number"
}

# expect_cmp A OP B WHAT, OP one of -eq -ne -lt -le -gt -ge
expect_cmp()
{
	if ! [[ "$1" =~ ^-?[0-9]+$ && "$3" =~ ^-?[0-9]+$ ]]; then
		fail "$4: cannot compare '$1' $2 '$3'"
		return 1
	fi
	test "$1" "$2" "$3" || fail "$4: expected $1 $2 $3"
}

# Run a command, show its output as diagnostics when it fails; the output
# is left in $COR_EXPECT_OUT.
# expect_ok WHAT cmd args...
expect_ok()
{
	local what=$1 out rc

	shift
	out=$("$@" 2>&1)
	rc=$?
	COR_EXPECT_OUT=$out
	if [ $rc -ne 0 ]; then
		ktap_diag "$(printf '%s\n' "$out" | tail -n 20)"
		fail "$what: '$*' exited $rc"
		return 1
	fi
	[ -n "$COR_VERBOSE" ] && ktap_diag "$out"
	return 0
}

# expect_fail WHAT cmd args...: the command must fail.
expect_fail()
{
	local what=$1 out rc

	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		ktap_diag "$out"
		fail "$what: '$*' succeeded but must fail"
		return 1
	fi
	return 0
}

# Run a command with its output as diagnostics; returns its status.
run_diag()
{
	local out rc

	out=$("$@" 2>&1)
	rc=$?
	[ -n "$out" ] && ktap_diag "$out"
	return $rc
}

########################################################################
# Prerequisites and life cycle

cor_require_cmd()
{
	local c

	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || ktap_skip_all "$c not found"
	done
}

# cor_require_targets NAME...: dm targets the test needs (modules loaded
# on demand), else skip
cor_require_targets()
{
	local t

	for t in "$@"; do
		dmsetup targets | grep -qw "^$t" || modprobe "dm-$t" >/dev/null 2>&1
		dmsetup targets | grep -qw "^$t" || ktap_skip_all "dm-$t not available"
	done
}

# The disks are written to: refuse anything that looks in use.
cor_check_disks()
{
	local d b h hn sz n=0

	for d in $COR_DISKS; do
		[ -b "$d" ] || ktap_skip_all "scratch disk $d missing (set COR_DISKS)"
		b=$(basename "$(readlink -f "$d")")
		if grep -q "^/dev/$b" /proc/mounts || grep -q "^/dev/$b" /proc/swaps; then
			ktap_skip_all "scratch disk $d is mounted or swap, refusing to use it"
		fi
		if ls -d /sys/class/block/"$b"/"$b"[0-9p]* >/dev/null 2>&1; then
			ktap_skip_all "scratch disk $d has partitions, refusing to use it"
		fi
		for h in /sys/class/block/"$b"/holders/*; do
			[ -e "$h" ] || continue
			hn=$(cat "$h/dm/name" 2>/dev/null)
			[[ "$hn" == "$COR_PREFIX"* ]] && continue
			hn=${hn:-$(basename "$h")}
			ktap_skip_all "scratch disk $d is held by $hn, refusing to use it"
		done
		sz=$(blockdev --getsz "$d" 2>/dev/null) ||
			ktap_skip_all "cannot size scratch disk $d"
		[ "$sz" -le $((64 << 21)) ] ||
			ktap_skip_all "scratch disk $d is larger than 64 GiB, refusing to use it"
		n=$((n + 1))
	done
	[ $n -ge 3 ] || ktap_skip_all "need 3 scratch disks, COR_DISKS='$COR_DISKS'"
}

cor_load_module()
{
	local out

	modprobe dm-mod >/dev/null 2>&1
	dmsetup version >/dev/null 2>&1 || ktap_skip_all "device-mapper not available"
	dmsetup targets 2>/dev/null | grep -qw '^cor' && return 0
	out=$(modprobe dm-cor 2>&1)
	if ! dmsetup targets 2>/dev/null | grep -qw '^cor' && [ -n "$COR_MODULE" ]; then
		# insmod does not load dependencies
		modprobe -a dm-bufio libcrc32c >/dev/null 2>&1
		out="$out $(insmod "$COR_MODULE" 2>&1)"
	fi
	dmsetup targets 2>/dev/null | grep -qw '^cor' ||
		ktap_skip_all "dm-cor target not available: ${out:-modprobe dm-cor failed}"
}

# Write a marker into the kernel log; the epilogue scans what follows it.
cor_klog_mark()
{
	COR_KLOG_MARK="dm-cor-selftest: start $COR_TEST_NAME pid $$ t $(date +%s%N)"
	COR_KLOG_LINES=$(dmesg 2>/dev/null | wc -l)
	echo "$COR_KLOG_MARK" > /dev/kmsg 2>/dev/null || COR_KLOG_MARK=
}

# Kernel log since the marker (or since the recorded line count).
cor_klog_since()
{
	local log

	log=$(dmesg 2>/dev/null)
	if [ -n "$COR_KLOG_MARK" ] && grep -qF "$COR_KLOG_MARK" <<<"$log"; then
		awk -v m="$COR_KLOG_MARK" 'f { print } index($0, m) { f = 1 }' <<<"$log"
	else
		tail -n +"$((COR_KLOG_LINES + 1))" <<<"$log"
	fi
}

# cor_test_init [--no-module] [--no-disks]
cor_test_init()
{
	local need_mod=1 need_disks=1 d

	for d in "$@"; do
		case "$d" in
		--no-module) need_mod= ;;
		--no-disks) need_disks= ;;
		esac
	done
	COR_T0=$SECONDS
	echo "KTAP version 1"
	trap cor_epilogue EXIT
	trap 'exit 143' TERM
	trap 'exit 130' INT
	[ "$(id -u)" -eq 0 ] || ktap_skip_all "must be run as root"
	cor_require_cmd dmsetup blockdev dd cmp sha256sum awk grep sed stat dmesg
	[ -x "$COR_PATTERN" ] && [ -x "$COR_RACE" ] ||
		ktap_skip_all "C helpers not built (make -C $COR_SELFTEST_DIR)"
	[ -n "$need_mod" ] && cor_load_module
	[ -n "$need_disks" ] && cor_check_disks
	COR_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cortest.XXXXXX") ||
		ktap_skip_all "cannot create a temp directory"
	cor_klog_mark
	COR_STARTED=1
	# leftovers of an earlier test would break this one: remove them
	if [ -n "$(cor_leftover_devs)" ]; then
		ktap_diag "removing leftover devices: $(cor_leftover_devs | tr '\n' ' ')"
		cor_remove_leftovers
	fi
}

########################################################################
# dm devices

declare -a COR_DEVS=()		# every dm name this test created, in order
declare -a COR_COR_DEVS=()	# the cor ones
declare -A COR_DEV_TABLE=()	# cor name -> "len origin dest meta region"
declare -A COR_DEV_RO=()	# cor name -> 1 when created --readonly
declare -A COR_META_PENDING=()	# meta dev -> "len origin dest meta region ro hydrated dirty mode"
declare -A COR_META_NOCHECK=()	# meta dev -> reason
declare -A COR_ORIGIN_SUMS=()	# origin dev -> sha256 after stamping
declare -A COR_DISK_NEXT=()	# disk index -> next free sector

# dm_name X: the dm name for a short name, a dm name or /dev/mapper/NAME
dm_name()
{
	local n=${1#/dev/mapper/}

	[[ "$n" == "$COR_PREFIX"* ]] || n=$COR_PREFIX$n
	echo "$n"
}

dm_path()
{
	echo "/dev/mapper/$(dm_name "$1")"
}

dm_exists()
{
	dmsetup info "$(dm_name "$1")" >/dev/null 2>&1
}

dm_minor()
{
	dmsetup info -c --noheadings -o minor "$(dm_name "$1")" | tr -d ' '
}

dm_majmin()
{
	dmsetup info -c --noheadings -o major,minor --separator : "$(dm_name "$1")" | tr -d ' '
}

# major:minor of any block device path
dev_majmin()
{
	local t

	t=$(stat -L -c '%t %T' "$1") || return 1
	set -- $t
	echo "$((16#$1)):$((16#$2))"
}

# dev_stat_field DEV N: field N (1-based) of the device's sysfs stat
dev_stat_field()
{
	local mm

	mm=$(dev_majmin "$1") || return 1
	awk -v n="$2" '{ print $n }' "/sys/dev/block/$mm/stat"
}

dev_read_sectors()  { dev_stat_field "$1" 3; }
dev_read_ios()      { dev_stat_field "$1" 1; }
dev_write_sectors() { dev_stat_field "$1" 7; }

dev_sectors()
{
	blockdev --getsz "$1"
}

# size argument: N (sectors), NK, NM, NG
size_to_sectors()
{
	case "$1" in
	*K) echo $((${1%K} * 2)) ;;
	*M) echo $((${1%M} * 2048)) ;;
	*G) echo $((${1%G} * 2097152)) ;;
	*) echo "$1" ;;
	esac
}

cor_disk()
{
	local i=0 d

	for d in $COR_DISKS; do
		[ $i -eq "$1" ] && { echo "$d"; return 0; }
		i=$((i + 1))
	done
	return 1
}

# dm_create NAME TABLE [dmsetup create options]: track and create
dm_create()
{
	local name out rc

	name=$(dm_name "$1")
	shift
	local table=$1
	shift
	out=$(dmsetup create "$name" "$@" --table "$table" 2>&1)
	rc=$?
	COR_LAST_OUTPUT=$(tr "\n" " " <<<"$out")
	if [ $rc -eq 0 ]; then
		COR_DEVS+=("$name")
	elif dm_exists "$name"; then
		# a failed create must not leave the device: track it for teardown
		COR_DEVS+=("$name")
	fi
	return $rc
}

# slice_create NAME DISK_INDEX SIZE: a dm-linear slice of a scratch disk at
# the next free 1 MiB-aligned offset.  Echoes nothing; use dm_path NAME.
slice_create()
{
	local name=$1 disk sectors off end

	disk=$(cor_disk "$2") || { fail "no scratch disk $2"; return 1; }
	sectors=$(size_to_sectors "$3")
	off=${COR_DISK_NEXT[$2]:-0}
	end=$(dev_sectors "$disk")
	if [ $((off + sectors)) -gt "$end" ]; then
		fail "slice $name: disk $disk has no room for $sectors sectors at $off"
		return 1
	fi
	COR_DISK_NEXT[$2]=$(((off + sectors + 2047) / 2048 * 2048))
	dm_create "$name" "0 $sectors linear $disk $off" ||
		{ fail "cannot create slice $name: $COR_LAST_OUTPUT"; return 1; }
}

# zero_dev DEV: write zeroes over the whole device
zero_dev()
{
	local dev=$1 s bs count

	s=$(dev_sectors "$dev") || return 1
	if [ $((s % 2048)) -eq 0 ]; then
		bs=1M count=$((s / 2048))
	elif [ $((s % 8)) -eq 0 ]; then
		bs=4K count=$((s / 8))
	else
		bs=512 count=$s
	fi
	dd if=/dev/zero of="$dev" bs=$bs count=$count oflag=direct status=none || return 1
	unset "COR_META_PENDING[$dev]"
}

# cor_setup_devs ORIGIN_SIZE DEST_SIZE META_SIZE: slices "origin" (disk 0),
# "dest" (disk 1) and "meta" (disk 2, zeroed); sets $ORIGIN $DEST $META
# (paths) and $ORIGIN_SECTORS.
cor_setup_devs()
{
	slice_create origin 0 "$1" || return 1
	slice_create dest 1 "$2" || return 1
	slice_create meta 2 "$3" || return 1
	ORIGIN=$(dm_path origin)
	DEST=$(dm_path dest)
	META=$(dm_path meta)
	ORIGIN_SECTORS=$(dev_sectors "$ORIGIN")
	zero_dev "$META" || { fail "cannot zero $META"; return 1; }
}

# stamp_origin [SEED [DEV]]: pattern over the whole origin, remember its
# checksum for the epilogue.  Sets $ORIGIN_SEED and $ORIGIN_BLOCKS.
stamp_origin()
{
	local seed=${1:-$((RANDOM * 32768 + RANDOM))} dev=${2:-$ORIGIN} out

	out=$("$COR_PATTERN" stamp "$dev" 0 all "$seed" --quiet 2>&1) ||
		{ fail "stamping $dev: $out"; return 1; }
	ORIGIN_SEED=$seed
	ORIGIN_BLOCKS=$(($(dev_sectors "$dev") / 8))
	COR_ORIGIN_SUMS[$dev]=$(origin_checksum "$dev")
	ktap_diag "origin $dev stamped with seed $seed, sha256 ${COR_ORIGIN_SUMS[$dev]}"
}

# origin_checksum [DEV]: sha256 of the whole device (O_DIRECT reads)
origin_checksum()
{
	dd if="${1:-$ORIGIN}" bs=1M iflag=direct status=none | sha256sum | awk '{ print $1 }'
}

# cor_table [--len L] ORIGIN DEST META REGION [opt ...]: the table line;
# the optional args are counted for you.
cor_table()
{
	local len=

	if [ "$1" == "--len" ]; then
		len=$2
		shift 2
	fi
	local o=$1 d=$2 m=$3 r=$4

	shift 4
	[ -n "$len" ] || len=${COR_LEN:-$(dev_sectors "$o")}
	if [ $# -gt 0 ]; then
		echo "0 $len cor $o $d $m $r $# $*"
	else
		echo "0 $len cor $o $d $m $r"
	fi
}

# cor_create [--readonly] [--len L] NAME ORIGIN DEST META REGION [opt ...]
# Returns dmsetup's status; its output is in $COR_LAST_OUTPUT.
cor_create()
{
	local ro='' lenarg=() name table rc len

	while :; do
		case "$1" in
		--readonly) ro=1; shift ;;
		--len) lenarg=(--len "$2"); shift 2 ;;
		*) break ;;
		esac
	done
	name=$(dm_name "$1")
	shift
	table=$(cor_table "${lenarg[@]}" "$@")
	dm_create "$name" "$table" ${ro:+--readonly}
	rc=$?
	if [ $rc -ne 0 ]; then
		# name the reason the kernel gave
		COR_LAST_OUTPUT="$COR_LAST_OUTPUT [kernel: $(dmesg 2>/dev/null |
			grep -E 'device-mapper: table: .*: cor: ' | tail -n 1 |
			sed 's/.*: cor: //')]"
	fi
	if [ $rc -eq 0 ]; then
		COR_COR_DEVS+=("$name")
		len=$(awk '{ print $2 }' <<<"$table")
		COR_DEV_TABLE[$name]="$len $1 $2 $3 $4"
		COR_DEV_RO[$name]=$ro
	fi
	return $rc
}

# Remove a dm device (retrying while it is briefly busy).
dm_remove()
{
	local name i out

	name=$(dm_name "$1")
	for i in 1 2 3 4 5 6 7 8 9 10; do
		out=$(dmsetup remove "$name" 2>&1) && break
		dm_exists "$name" || break
		sleep 0.5
	done
	if dm_exists "$name"; then
		COR_LAST_OUTPUT=$out
		return 1
	fi
	local keep=() d

	for d in "${COR_DEVS[@]}"; do
		[ "$d" == "$name" ] || keep+=("$d")
	done
	COR_DEVS=("${keep[@]}")
	keep=()
	for d in "${COR_COR_DEVS[@]}"; do
		[ "$d" == "$name" ] || keep+=("$d")
	done
	COR_COR_DEVS=("${keep[@]}")
	return 0
}

# cor_remove NAME: remove a cor device and queue its metadata for the
# epilogue's check, with the region counts it had.
cor_remove()
{
	local name t st h d m

	name=$(dm_name "$1")
	t=${COR_DEV_TABLE[$name]}
	st=$(cor_status_fields "$name" hydrated dirty mode 2>/dev/null)
	dm_remove "$name" || { fail "cannot remove $name: $COR_LAST_OUTPUT"; return 1; }
	set -- $t
	m=$4
	if [ -n "$t" ] && [ "$m" != "-" ]; then
		COR_META_PENDING[$m]="$t ${COR_DEV_RO[$name]:-0} ${st:-? ? ?}"
	fi
	unset "COR_DEV_TABLE[$name]"
	return 0
}

# cor_remove_all: remove every cor device of the test (a subtest's clean
# slate after an earlier one failed half-way)
cor_remove_all()
{
	local i rc=0

	for ((i = ${#COR_COR_DEVS[@]} - 1; i >= 0; i--)); do
		cor_remove "${COR_COR_DEVS[$i]}" || rc=1
	done
	return $rc
}

# Skip the epilogue's metadata check of META (damaged on purpose, ...)
cor_skip_meta_check()
{
	COR_META_NOCHECK[$1]=${2:-requested by the test}
}

cor_leftover_devs()
{
	dmsetup ls 2>/dev/null | awk -v p="$COR_PREFIX" 'index($1, p) == 1 { print $1 }'
}

# Remove every device with the prefix: cor ones first, then the rest,
# forcing (error table) when a plain remove does not work.
cor_remove_leftovers()
{
	local pass n

	for pass in cor other force; do
		for n in $(cor_leftover_devs); do
			case $pass in
			cor)
				dmsetup table "$n" 2>/dev/null | grep -q ' cor ' || continue
				dmsetup remove "$n" >/dev/null 2>&1 ;;
			other)
				dmsetup remove "$n" >/dev/null 2>&1 ;;
			force)
				dmsetup remove --force "$n" >/dev/null 2>&1 ;;
			esac
		done
	done
}

########################################################################
# cor status, messages, polling

cor_status()
{
	dmsetup status "$(dm_name "$1")" 2>/dev/null
}

# Parse a status line (from "dmsetup status", start and length included)
# into name=value lines: metadata_block_size metadata_used metadata_total
# region_size hydrated total_regions hydrating dirty mode features
# core_args, each core arg pair, and each counter.
cor_status_parse()
{
	awk '{
		i = 4
		f["metadata_block_size"] = $i; i++
		split($i, a, "/"); f["metadata_used"] = a[1]; f["metadata_total"] = a[2]; i++
		f["region_size"] = $i; i++
		split($i, a, "/"); f["hydrated"] = a[1]; f["total_regions"] = a[2]; i++
		f["hydrating"] = $i; i++
		f["dirty"] = $i; i++
		f["mode"] = $i; i++
		n = $i; i++; s = ""
		for (k = 0; k < n; k++) { s = s (k ? " " : "") $i; f["feature:" $i] = 1; i++ }
		f["nr_features"] = n; f["features"] = s
		n = $i; i++; s = ""
		for (k = 0; k < n; k++) { s = s (k ? " " : "") $i; i++ }
		f["nr_core_args"] = n; f["core_args"] = s
		m = split(s, c, " ")
		for (k = 1; k + 1 <= m; k += 2) f["core:" c[k]] = c[k + 1]
		if (i <= NF) {
			n = $i; i++; f["nr_counter_words"] = n
			for (k = 0; k + 1 < n && i + 1 <= NF; k += 2) { f[$i] = $(i + 1); i += 2 }
		}
		for (k in f) print k "=" f[k]
	}'
}

# cor_status_field NAME FIELD: one field (see cor_status_parse; aliases
# hydrated_regions, dirty_regions, hydrating_regions)
cor_status_field()
{
	local field=$2 line

	case "$field" in
	hydrated_regions) field=hydrated ;;
	dirty_regions) field=dirty ;;
	hydrating_regions) field=hydrating ;;
	esac
	line=$(cor_status "$1") || return 1
	cor_status_parse <<<"$line" | awk -v k="$field" '
		index($0, k "=") == 1 { print substr($0, length(k) + 2); found = 1 }
		END { exit !found }'
}

# cor_status_fields NAME F1 F2 ...: the fields on one line, "?" if absent
cor_status_fields()
{
	local name=$1 line parsed f v out=()

	shift
	line=$(cor_status "$name") || return 1
	parsed=$(cor_status_parse <<<"$line")
	for f in "$@"; do
		v=$(awk -v k="$f" \
			'index($0, k "=") == 1 { print substr($0, length(k) + 2) }' <<<"$parsed")
		out+=("${v:-?}")
	done
	echo "${out[*]}"
}

# wait_status NAME FIELD OP VALUE [TIMEOUT]: poll until the numeric field
# satisfies OP (-eq -ge -le ...), for at most TIMEOUT seconds (default
# $COR_WAIT_TIMEOUT); a longer TIMEOUT also gives up when the field has not
# changed for $COR_WAIT_TIMEOUT seconds.  On timeout, prints the status.
wait_status()
{
	local name=$1 field=$2 op=$3 want=$4 tmo=${5:-$COR_WAIT_TIMEOUT}
	local v last='' end stall why

	end=$((SECONDS + tmo))
	stall=$((SECONDS + COR_WAIT_TIMEOUT))
	while :; do
		v=$(cor_status_field "$name" "$field")
		[[ "$v" =~ ^[0-9]+$ ]] && test "$v" "$op" "$want" && return 0
		if [ "$v" != "$last" ]; then
			last=$v
			stall=$((SECONDS + COR_WAIT_TIMEOUT))
		fi
		if [ $SECONDS -ge "$end" ]; then
			why="${tmo}s"
			break
		fi
		if [ $SECONDS -ge "$stall" ]; then
			why="no progress for ${COR_WAIT_TIMEOUT}s"
			break
		fi
		sleep 0.2
	done
	ktap_diag "timeout ($why) waiting for $field $op $want, status: $(cor_status "$name")"
	return 1
}

# wait_hydrated NAME N [TIMEOUT]: poll until at least N regions are hydrated
# and no copy is in flight
wait_hydrated()
{
	wait_status "$1" hydrated -ge "$2" "$3" || return 1
	wait_status "$1" hydrating -eq 0 "$3"
}

# cor_message NAME ARGS...: dmsetup message; prints the reply
cor_message()
{
	local name

	name=$(dm_name "$1")
	shift
	dmsetup message "$name" 0 "$@"
}

# cor_bitmap NAME hydrated|dirty FIRST NR: the reply, whitespace-normalised
cor_bitmap()
{
	local out

	out=$(cor_message "$1" bitmap "$2" "$3" "$4") || return 1
	echo $out
}

# ranges_normalize "3 5-7 4 10": sorted union as "3-7 10"
ranges_normalize()
{
	echo "$*" | tr ' ' '\n' | awk -F- 'NF == 1 && $1 != "" { print $1 }
		NF == 2 { for (i = $1; i <= $2; i++) print i }' | sort -n -u |
	awk 'NR == 1 { a = b = $1; next }
	     $1 == b + 1 { b = $1; next }
	     { out = out (out ? " " : "") (a == b ? a : a "-" b); a = b = $1 }
	     END { if (NR) print out (out ? " " : "") (a == b ? a : a "-" b) }'
}

# ranges_count "0-3 7": number of elements (5)
ranges_count()
{
	echo "$*" | tr ' ' '\n' | awk -F- 'NF == 1 && $1 != "" { n++ }
		NF == 2 { n += $2 - $1 + 1 } END { print n + 0 }'
}

# regions_of SECTOR NR_SECTORS REGION_SIZE: "a-b" regions touched
regions_of()
{
	local a=$(($1 / $3)) b=$((($1 + $2 - 1) / $3))

	if [ $a -eq $b ]; then echo $a; else echo "$a-$b"; fi
}

# whole_regions_of SECTOR NR_SECTORS REGION_SIZE: regions fully covered
whole_regions_of()
{
	local a=$((($1 + $3 - 1) / $3)) b=$((($1 + $2) / $3 - 1))

	if [ $a -gt $b ]; then echo ""; elif [ $a -eq $b ]; then echo $a; else echo "$a-$b"; fi
}

########################################################################
# Data helpers

# dd bs for a transfer of LEN bytes done as one I/O (1 MiB pieces above 4 MiB)
_dd_bs()
{
	if [ "$1" -gt $((4 << 20)) ]; then echo 1M; else echo "$1"; fi
}

# dd_read DEV SECTOR NR_SECTORS OUTFILE: O_DIRECT read of a sector range,
# issued as a single read (so it straddles regions in one bio)
dd_read()
{
	local len=$(($3 * 512))

	dd if="$1" of="$4" bs="$(_dd_bs $len)" skip=$(($2 * 512)) count=$len \
		iflag=direct,skip_bytes,count_bytes,fullblock status=none
}

# dd_write SRCFILE SRC_SECTOR DEV SECTOR NR_SECTORS: O_DIRECT write of a
# sector range, issued as a single write
dd_write()
{
	local len=$(($5 * 512))

	dd if="$1" of="$3" bs="$(_dd_bs $len)" skip=$(($2 * 512)) seek=$(($4 * 512)) \
		count=$len iflag=skip_bytes,count_bytes,fullblock \
		oflag=direct,seek_bytes conv=notrunc status=none
}

# file_range FILE SECTOR NR_SECTORS OUTFILE: buffered slice of a file
file_range()
{
	dd if="$1" of="$4" bs=512 skip="$2" count="$3" status=none
}

# model_write MODEL SRCFILE SRC_SECTOR SECTOR NR_SECTORS: apply a write
model_write()
{
	dd if="$2" of="$1" bs=512 skip="$3" seek="$4" count="$5" conv=notrunc status=none
}

# expect_dev_matches_file WHAT DEV SECTOR NR FILE [FILE_SECTOR]: compare a
# device range (O_DIRECT) with the same range of a model file
expect_dev_matches_file()
{
	local what=$1 dev=$2 s=$3 n=$4 f=$5 fs=${6:-$3} out msg

	dd_read "$dev" "$s" "$n" "$COR_TMP/cmp.dev" ||
		{ fail "$what: read of $dev sectors $s+$n failed"; return 1; }
	file_range "$f" "$fs" "$n" "$COR_TMP/cmp.model"
	out=$(cmp "$COR_TMP/cmp.dev" "$COR_TMP/cmp.model" 2>&1) && return 0
	local byte=

	[[ "$out" =~ (byte|char)\ ([0-9]+) ]] && byte=${BASH_REMATCH[2]}
	if [ -n "$byte" ]; then
		local abs=$(( s * 512 + byte - 1 ))
		msg="$what: $dev differs from the model at sector $((abs / 512)) (byte $abs); "
		msg+="device block holds: $("$COR_PATTERN" describe "$dev" $((abs / 4096)) 2>&1)"
		fail "$msg"
	else
		fail "$what: $dev sectors $s+$n differ from the model: $out"
	fi
	return 1
}

# cor_tool NAME: print the path of the dm-cor tool NAME (tools/dm-cor/),
# nothing if it is not built
cor_tool()
{
	local t

	for t in "$COR_TOOLS_DIR/$1" "$COR_REPO_ROOT/tools/dm-cor/$1" "/dm-cor/tools/dm-cor/$1"; do
		[ -x "$t" ] && { echo "$t"; return 0; }
	done
	command -v "$1" 2>/dev/null
}

########################################################################
# Epilogue

cor_meta_check_one()
{
	local m=$1 entry=${COR_META_PENDING[$1]} len o d mm r ro h0 d0 mode0
	local tool out rc st h1 d1 mode1 errs=()

	read -r len o d mm r ro h0 d0 mode0 <<<"$entry"
	tool=$(cor_tool cor_check)
	if [ -n "$tool" ]; then
		out=$("$tool" "$m" 2>&1)
		rc=$?
		if [ $rc -ne 0 ]; then
			ktap_diag "$out"
			errs+=("cor_check $m exited $rc")
		fi
	fi
	# reload a cor device on the same metadata: it must load and show the
	# same state (dirty regions exactly, hydrated ones at least)
	local roarg=() subs=() v

	[ "$ro" == 1 ] && roarg=(--readonly)
	# an origin or destination removed since (a stacked cor device, say):
	# the zero target of the same length stands in, the check reads neither
	for v in o d; do
		[ -b "${!v}" ] && continue
		dm_create "metasub$v" "0 $len zero" ||
			{ errs+=("cannot create a stand-in for ${!v}"); continue; }
		subs+=("metasub$v")
		printf -v "$v" %s "$(dm_path "metasub$v")"
	done
	if ! dm_create metacheck "$(cor_table --len "$len" "$o" "$d" "$m" "$r")" "${roarg[@]}"; then
		errs+=("reloading cor on $m failed: $COR_LAST_OUTPUT")
	else
		read -r h1 d1 mode1 <<<"$(cor_status_fields metacheck hydrated dirty mode)"
		if [ "$mode0" == "rw" ]; then
			[ "$d1" == "$d0" ] ||
				errs+=("$m: $d0 dirty regions before removal, $d1 after reload")
			[[ "$h1" =~ ^[0-9]+$ && "$h0" =~ ^[0-9]+$ && $h1 -ge $h0 ]] ||
				errs+=("$m: $h0 hydrated regions before removal, $h1 after reload")
		fi
		[ "$mode1" == "fail" ] && errs+=("$m: reloaded device is in fail mode")
		dm_remove metacheck || errs+=("cannot remove the metadata check device")
	fi
	for v in "${subs[@]}"; do
		dm_remove "$v" || errs+=("cannot remove the stand-in $v")
	done
	[ ${#errs[@]} -eq 0 ] && return 0
	COR_EPI_META_ERR="${errs[*]}"
	return 1
}

cor_epilogue()
{
	local rc=$? name m dev sum now leak klog bad
	local r_dev=ok r_meta=ok r_origin=ok r_klog=ok
	local e_dev= e_meta= e_origin= e_klog=

	trap - EXIT TERM INT
	[ -n "$COR_EPILOGUE_DONE" ] && exit "$rc"
	COR_EPILOGUE_DONE=1
	if [ -z "$COR_STARTED" ]; then
		# skipped before anything was set up
		[ -n "$COR_SKIP_ALL" ] && exit 4
		exit "$rc"
	fi

	# (b) remove the cor devices, newest first
	for ((i = ${#COR_COR_DEVS[@]} - 1; i >= 0; i--)); do
		name=${COR_COR_DEVS[$i]}
		if ! cor_remove "$name" >/dev/null; then
			r_dev=fail
			e_dev="cannot remove $name: $COR_LAST_OUTPUT"
		fi
	done
	# (d) metadata of every cor device this test left
	if [ ${#COR_META_PENDING[@]} -eq 0 ]; then
		r_meta=skip
		e_meta="no persistent metadata used"
	fi
	for m in "${!COR_META_PENDING[@]}"; do
		if [ -n "${COR_META_NOCHECK[$m]}" ]; then
			ktap_diag "metadata check of $m skipped: ${COR_META_NOCHECK[$m]}"
			continue
		fi
		if ! dm_exists "$m" && [ ! -b "$m" ]; then
			continue
		fi
		COR_EPI_META_ERR=
		cor_meta_check_one "$m" || { r_meta=fail; e_meta="$e_meta $COR_EPI_META_ERR"; }
	done
	# (c) origins unchanged
	if [ ${#COR_ORIGIN_SUMS[@]} -eq 0 ]; then
		r_origin=skip
		e_origin="no origin stamped"
	fi
	for dev in "${!COR_ORIGIN_SUMS[@]}"; do
		sum=${COR_ORIGIN_SUMS[$dev]}
		now=$(origin_checksum "$dev")
		if [ "$now" != "$sum" ]; then
			r_origin=fail
			e_origin="$e_origin $dev: sha256 $now, was $sum after stamping"
			run_diag "$COR_PATTERN" verify "$dev" 0 all "$ORIGIN_SEED" --max-report 4
		fi
	done
	# (b) then the rest, and nothing with the prefix may remain
	for ((i = ${#COR_DEVS[@]} - 1; i >= 0; i--)); do
		name=${COR_DEVS[$i]}
		if ! dm_remove "$name"; then
			r_dev=fail
			e_dev="$e_dev cannot remove $name: $COR_LAST_OUTPUT"
		fi
	done
	leak=$(cor_leftover_devs | tr '\n' ' ')
	if [ -n "$leak" ]; then
		r_dev=fail
		e_dev="$e_dev leaked dm devices: $leak"
		cor_remove_leftovers
	fi
	# (a) kernel log
	klog=$(cor_klog_since)
	bad=$(grep -E -A 8 "$COR_KLOG_BAD" <<<"$klog" | head -n 60)
	if [ -n "$bad" ]; then
		r_klog=fail
		e_klog="kernel log: $(grep -E -m 1 "$COR_KLOG_BAD" <<<"$klog")"
		ktap_diag "kernel log since the test started:" "$bad"
	fi

	[ -n "$COR_KEEP_TMP" ] || rm -rf "$COR_TMP"
	if [ -n "$COR_SKIP_ALL" ]; then
		# "1..0 # SKIP" is out: only a broken teardown turns it into a failure
		local r=4

		[ $r_dev == fail ] && { ktap_diag "teardown: $e_dev"; r=1; }
		[ $r_meta == fail ] && { ktap_diag "teardown: $e_meta"; r=1; }
		[ $r_origin == fail ] && { ktap_diag "teardown: $e_origin"; r=1; }
		[ $r_klog == fail ] && { ktap_diag "teardown: $e_klog"; r=1; }
		exit $r
	fi
	cor_epi_report "epilogue: dm devices removed, none leaked" $r_dev "$e_dev"
	cor_epi_report "epilogue: metadata consistent" $r_meta "$e_meta"
	cor_epi_report "epilogue: origin unchanged" $r_origin "$e_origin"
	cor_epi_report "epilogue: kernel log clean" $r_klog "$e_klog"

	if [ $KTAP_FAIL -eq 0 ] && [ $rc -ne 0 ] && [ $rc -ne 4 ]; then
		ktap_diag "test script exited with status $rc"
	fi
	ktap_diag "$COR_TEST_NAME: $((SECONDS - COR_T0))s"
	echo "# Totals: pass:$KTAP_PASS fail:$KTAP_FAIL xfail:0 xpass:0 skip:$KTAP_SKIP error:0"
	if [ $KTAP_FAIL -gt 0 ] || [ -n "$COR_BAILED" ] ||
	   { [ $rc -ne 0 ] && [ $rc -ne 4 ]; }; then
		exit 1
	fi
	if [ -n "$KTAP_PLANNED" ] && [ "$KTAP_CNT" -ne "$KTAP_PLANNED" ]; then
		ktap_diag "planned $KTAP_PLANNED subtests, ran $KTAP_CNT"
		exit 1
	fi
	# every subtest of the test itself skipped: the test is skipped
	if [ $((KTAP_PASS - COR_EPI_PASSES)) -eq 0 ] &&
	   [ $((KTAP_SKIP - COR_EPI_SKIPS)) -gt 0 ]; then
		exit 4
	fi
	exit 0
}

COR_EPI_PASSES=0
COR_EPI_SKIPS=0

cor_epi_report()
{
	case "$2" in
	ok) ktap_ok "$1"; COR_EPI_PASSES=$((COR_EPI_PASSES + 1)) ;;
	skip) ktap_skip "$1" "$3"; COR_EPI_SKIPS=$((COR_EPI_SKIPS + 1)) ;;
	*) ktap_fail "$1" "$3" ;;
	esac
}

# End of a test: run the epilogue now (it exits).
cor_test_done()
{
	exit 0
}
