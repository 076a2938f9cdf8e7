#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_corctl.sh: corctl, the operator front end (tools/dm-cor/corctl).
#
# Bad arguments exit 2, --help and --version work for every command, and a
# device that is not cor is refused.  "status --json" is one JSON object
# whose numbers are those of "dmsetup status"; the human status shows the
# progress.  "wait" times out (non-zero) while hydration is stopped and
# returns 0 once background hydration completes; "watch" prints plain
# lines without a terminal and redraws a bar on one (script(1)).
# "finalize" refuses an incomplete device and leaves it as it was, and
# turns a complete one into a linear device over the destination with the
# same content, releasing origin and metadata.
# "prefetch" of ranges hydrates exactly their regions, and of a file on an
# ext4 filesystem on the device the regions of that file (skipped when the
# module has no prefetch message).
#
# JSON is checked with python3 when the system has it, else jq, else an
# awk parser below (the test VM has neither python3 nor jq).

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

cor_test_init

CORCTL=$(cor_tool corctl)
[ -n "$CORCTL" ] || ktap_skip_all "corctl not built (make -C tools/dm-cor)"

ktap_plan 11

SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors (32 KiB)

cor_setup_devs 16M 16M 4M || cor_bail "cannot create the test devices"
slice_create origin2 0 32M || cor_bail "cannot create the second origin slice"
slice_create dest2 1 32M || cor_bail "cannot create the second destination slice"
slice_create meta2 2 1M || cor_bail "cannot create the second metadata slice"
ORIGIN2=$(dm_path origin2)
DEST2=$(dm_path dest2)
META2=$(dm_path meta2)
zero_dev "$META2" || cor_bail "cannot zero $META2"
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
TOTAL=$((ORIGIN_SECTORS / REGION))
COR=$(dm_path cor)
CN=$(dm_name cor)		# dm names for corctl
C2N=$(dm_name cor2)
DMM=$(dev_majmin "$DEST")
DATA=$COR_TMP/data
"$COR_PATTERN" gen 0 64 $((SEED + 1)) --pattern-version 1 >"$DATA" ||
	cor_bail "cannot build the data"
ktap_diag "corctl: $CORCTL ($("$CORCTL" --version 2>&1))"

########################################################################
# JSON: flattened to "path=value" lines (objects' keys joined with ".",
# array elements by index; strings unescaped, other values as written)

JSON_AWK='
function jerr(m) { printf "json: %s at offset %d\n", m, pos > "/dev/stderr"; bad = 1; exit 1 }
function ws() { while (pos <= n && index(" \t\r\n", substr(s, pos, 1))) pos++ }
function jstr(   r, c, e, h) {
	pos++
	r = ""
	for (;;) {
		if (pos > n) jerr("unterminated string")
		c = substr(s, pos, 1)
		if (c == "\"") { pos++; return r }
		if (c == "\\") {
			e = substr(s, pos + 1, 1)
			if (e == "u") {
				h = substr(s, pos + 2, 4)
				if (h !~ /^[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]$/)
					jerr("bad \\u escape")
				r = r "\\u" substr(s, pos + 2, 4)
				pos += 6
				continue
			}
			if (e == "n") r = r "\n"
			else if (e == "t") r = r "\t"
			else if (e == "r") r = r "\r"
			else if (e == "b") r = r "\b"
			else if (e == "f") r = r "\f"
			else if (e == "\"" || e == "\\" || e == "/") r = r e
			else jerr("bad escape")
			pos += 2
			continue
		}
		if (c ~ /[\001-\037]/) jerr("control character in a string")
		r = r c
		pos++
	}
}
function jvalue(p,   c, t) {
	ws()
	c = substr(s, pos, 1)
	if (c == "{") { jobject(p); return }
	if (c == "[") { jarray(p); return }
	if (c == "\"") { print p "=" jstr(); return }
	t = substr(s, pos)
	if (match(t, /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/)) {
		print p "=" substr(t, 1, RLENGTH)
		pos += RLENGTH
		return
	}
	if (substr(t, 1, 4) == "true" || substr(t, 1, 4) == "null") {
		print p "=" substr(t, 1, 4)
		pos += 4
		return
	}
	if (substr(t, 1, 5) == "false") { print p "=false"; pos += 5; return }
	jerr("unexpected \"" c "\"")
}
function jobject(p,   k, c) {
	pos++
	ws()
	if (substr(s, pos, 1) == "}") { pos++; return }
	for (;;) {
		ws()
		if (substr(s, pos, 1) != "\"") jerr("key expected")
		k = jstr()
		ws()
		if (substr(s, pos, 1) != ":") jerr("\":\" expected")
		pos++
		jvalue(p == "" ? k : p "." k)
		ws()
		c = substr(s, pos, 1)
		pos++
		if (c == "}") return
		if (c != ",") jerr("\",\" or \"}\" expected")
	}
}
function jarray(p,   i, c) {
	pos++
	ws()
	if (substr(s, pos, 1) == "]") { pos++; return }
	for (i = 0; ; i++) {
		jvalue(p == "" ? i : p "." i)
		ws()
		c = substr(s, pos, 1)
		pos++
		if (c == "]") return
		if (c != ",") jerr("\",\" or \"]\" expected")
	}
}
{ s = s $0 "\n" }
END {
	if (bad) exit 1
	n = length(s)
	pos = 1
	ws()
	if (substr(s, pos, 1) != "{") jerr("not an object")
	jvalue("")
	ws()
	if (pos <= n) jerr("trailing data")
}'

JSON_PY='
import json, sys
def walk(p, v):
    if isinstance(v, dict):
        for k, x in v.items():
            walk(p + "." + k if p else k, x)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            walk(p + "." + str(i) if p else str(i), x)
    elif isinstance(v, str):
        print(p + "=" + v)
    else:
        print(p + "=" + json.dumps(v))
v = json.load(sys.stdin)
if not isinstance(v, dict):
    sys.exit("not an object")
walk("", v)'

if command -v python3 >/dev/null 2>&1 && python3 -c 'import json' 2>/dev/null; then
	JSON_TOOL="python3"
elif command -v jq >/dev/null 2>&1; then
	JSON_TOOL="jq"
else
	JSON_TOOL="awk"
fi
ktap_diag "JSON checked with $JSON_TOOL"

# json_flatten < JSON: "path=value" lines; fails on anything but one object
json_flatten()
{
	case $JSON_TOOL in
	python3) python3 -c "$JSON_PY" ;;
	jq) jq -e -r 'if type == "object" then . else error("not an object") end |
		paths(type != "object" and type != "array") as $p |
		"\($p | map(tostring) | join("."))=\(getpath($p))"' ;;
	*) awk "$JSON_AWK" ;;
	esac
}

# jget FLAT PATH: the value of PATH in flattened JSON
jget()
{
	awk -v k="$2" 'index($0, k "=") == 1 { print substr($0, length(k) + 2); f = 1 }
		END { exit !f }' <<<"$1"
}

########################################################################
# Helpers

# run_corctl ARGS...: run corctl; $RC, $OUT (stdout), $ERR (stderr)
run_corctl()
{
	"$CORCTL" "$@" >"$COR_TMP/out" 2>"$COR_TMP/err"
	RC=$?
	OUT=$(cat "$COR_TMP/out")
	ERR=$(cat "$COR_TMP/err")
	[ -n "$COR_VERBOSE" ] && ktap_diag "corctl $* -> $RC" "$OUT" "$ERR"
	return 0
}

# on_tty RC ARGS...: corctl ARGS on a terminal (script(1)'s pty) must exit
# RC; what it drew is in $OUT.  Returns 2 (nothing checked) without script.
on_tty()
{
	local want=$1 cmd

	shift
	command -v script >/dev/null 2>&1 || return 2
	printf -v cmd '%q ' "$CORCTL" "$@"
	OUT=$(script -qefc "$cmd" /dev/null 2>&1 </dev/null)
	RC=$?
	if [ "$RC" != "$want" ]; then
		ktap_diag "on a terminal: $(cat -v <<<"$OUT")"
		fail "'corctl $*' on a terminal exited $RC, expected $want"
		return 1
	fi
}

# expect_rc RC ARGS...: corctl ARGS must exit RC (2: with a message)
expect_rc()
{
	local want=$1

	shift
	run_corctl "$@"
	if [ "$RC" != "$want" ]; then
		ktap_diag "stdout: $OUT" "stderr: $ERR"
		fail "'corctl $*' exited $RC, expected $want"
		return 1
	fi
	if [ "$want" == 2 ] && [ -z "$ERR" ]; then
		fail "'corctl $*' exited 2 without a message on stderr"
		return 1
	fi
	return 0
}

# status_counters NAME: "name=value" lines of the counters of dmsetup status
status_counters()
{
	cor_status_line "$1" | awk '{
		i = 8; i += $i + 1		# features
		i += $i + 1			# core args
		if (i > NF) exit
		n = $i; i++
		for (k = 0; k < n; k += 2) print $(i + k) "=" $(i + k + 1)
	}'
}

# prefetch_unsupported: the last corctl prefetch failed because the
# module has no prefetch message
prefetch_unsupported()
{
	[ "$RC" -ne 0 ] && dmesg | tail -n 20 | grep -q "unsupported message 'prefetch'"
}
PREFETCH_SKIP=

########################################################################
# Subtests

st_usage()
{
	local c

	expect_rc 2 &&
	expect_rc 2 frobnicate &&
	expect_rc 2 --bogus &&
	expect_rc 2 status &&
	expect_rc 2 status a b &&
	expect_rc 2 status --bogus "$CN" &&
	expect_rc 2 status --interval 0 "$CN" &&
	expect_rc 2 status --interval x "$CN" &&
	expect_rc 2 watch &&
	expect_rc 2 watch --interval -1 "$CN" &&
	expect_rc 2 wait &&
	expect_rc 2 wait "$CN" --timeout abc &&
	expect_rc 2 wait "$CN" --timeout &&
	expect_rc 2 prefetch &&
	expect_rc 2 prefetch "$CN" &&
	expect_rc 2 prefetch "$CN" 8+0 &&
	expect_rc 2 prefetch "$CN" 16-16 &&
	expect_rc 2 prefetch "$CN" 16-8 &&
	expect_rc 2 prefetch "$CN" 1x+8 &&
	expect_rc 2 prefetch "$CN" no-such-file-or-range &&
	expect_rc 2 prefetch --timeout y "$CN" 0+8 &&
	expect_rc 2 finalize &&
	expect_rc 2 finalize a b &&
	expect_rc 2 finalize --force "$CN" || return
	expect_rc 0 --help && expect_rc 0 --version || return
	[[ "$OUT" == corctl* ]] || { fail "--version prints '$OUT'"; return 1; }
	for c in status watch wait prefetch finalize; do
		expect_rc 0 "$c" --help || return
		[[ "$OUT" == *"usage: corctl $c"* ]] ||
			{ fail "$c --help prints '$OUT'"; return 1; }
		expect_rc 0 "$c" --version || return
	done
}

st_not_cor()
{
	local t0

	t0=$(dmsetup table "$(dm_name origin)")
	expect_rc 1 status "$(dm_name origin)" || return
	[[ "$ERR" == *"not a cor device"* ]] ||
		{ fail "status of a linear device says '$ERR'"; return 1; }
	expect_rc 1 status "$ORIGIN" &&
	expect_rc 1 status "$(dev_majmin "$ORIGIN")" &&
	expect_rc 1 wait --timeout 1 "$(dm_name origin)" &&
	expect_rc 1 watch "$(dm_name origin)" &&
	expect_rc 1 prefetch "$(dm_name origin)" 0+8 &&
	expect_rc 1 finalize "$(dm_name origin)" || return
	expect_eq "$(dmsetup table "$(dm_name origin)")" "$t0" \
		"table after a refused finalize" || return
	expect_rc 1 status "${COR_PREFIX}no-such-device" || return
	[[ "$ERR" == *"no such"* ]] || { fail "status of a missing device says '$ERR'"; return 1; }
	expect_rc 1 status /dev/null
}

# The device for the next subtests: regions 1-3 and 10 read, 20 written
st_json()
{
	local flat line want k v name n=0 mm

	cor_create cor "$ORIGIN" "$DEST" "$META" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	dd_read "$COR" "$REGION" $((3 * REGION)) "$COR_TMP/r" &&
	dd_read "$COR" $((10 * REGION + 8)) 8 "$COR_TMP/r" &&
	dd_write "$DATA" 0 "$COR" $((20 * REGION)) "$REGION" ||
		{ fail "I/O to $COR failed"; return 1; }
	wait_hydrated cor 5 || { fail "regions 1-3, 10, 20 did not hydrate"; return 1; }

	expect_rc 0 status --json --once "$CN" || return
	line=$(cor_status_line cor)
	flat=$(json_flatten <<<"$OUT") ||
		{ ktap_diag "$OUT"; fail "status --json is not one JSON object"; return 1; }
	expect_eq "$(jget "$flat" status_line)" "$line" "status_line" || return
	mm=$(dm_majmin cor)
	expect_eq "$(jget "$flat" device)" "$(dm_name cor)" "device" &&
	expect_eq "$(jget "$flat" major):$(jget "$flat" minor)" "$mm" "major:minor" &&
	expect_eq "$(jget "$flat" start)" 0 "start" &&
	expect_eq "$(jget "$flat" length)" "$ORIGIN_SECTORS" "length" &&
	expect_eq "$(jget "$flat" metadata.volatile)" false "metadata.volatile" &&
	expect_eq "$(jget "$flat" metadata.block_sectors)" \
		"$(cor_status_field cor metadata_block_size)" "metadata.block_sectors" &&
	expect_eq "$(jget "$flat" metadata.used_blocks)" "$(cor_status_field cor metadata_used)" \
		"metadata.used_blocks" &&
	expect_eq "$(jget "$flat" metadata.total_blocks)" "$(cor_status_field cor metadata_total)" \
		"metadata.total_blocks" &&
	expect_eq "$(jget "$flat" region_sectors)" "$REGION" "region_sectors" &&
	expect_eq "$(jget "$flat" regions.total)" "$TOTAL" "regions.total" &&
	expect_eq "$(jget "$flat" regions.hydrated)" "$(cor_status_field cor hydrated)" \
		"regions.hydrated" &&
	expect_eq "$(jget "$flat" regions.hydrated)" 5 "regions.hydrated" &&
	expect_eq "$(jget "$flat" regions.unhydrated)" $((TOTAL - 5)) "regions.unhydrated" &&
	expect_eq "$(jget "$flat" regions.hydrating)" "$(cor_status_field cor hydrating)" \
		"regions.hydrating" &&
	expect_eq "$(jget "$flat" regions.dirty)" 1 "regions.dirty" &&
	expect_eq "$(jget "$flat" mode)" rw "mode" &&
	expect_eq "$(jget "$flat" progress.complete)" false "progress.complete" &&
	expect_eq "$(jget "$flat" progress.total_bytes)" $((ORIGIN_SECTORS * 512)) \
		"progress.total_bytes" &&
	expect_eq "$(jget "$flat" progress.hydrated_bytes)" $((5 * REGION * 512)) \
		"progress.hydrated_bytes" &&
	expect_eq "$(jget "$flat" rate)" null "rate with --once" &&
	# the default tunables: batches of 2 MiB, 4 in flight
	expect_eq "$(jget "$flat" core_args.hydration_threshold)" $((4 * 4096 / REGION)) \
		"core_args.hydration_threshold" &&
	expect_eq "$(jget "$flat" core_args.hydration_batch_size)" $((4096 / REGION)) \
		"core_args.hydration_batch_size" || return
	# every counter, whatever the module prints
	while IFS== read -r k v; do
		[ -n "$k" ] || continue
		n=$((n + 1))
		expect_eq "$(jget "$flat" "counters.$k")" "$v" "counters.$k" || return
	done <<<"$(status_counters cor)"
	expect_eq "$(grep -c '^counters\.' <<<"$flat")" "$n" "number of counters" || return
	expect_cmp "$n" -ge 4 "number of counters" || return
	ktap_diag "$n counters; JSON: $OUT"
	# DEV as a path and as major:minor
	for name in "$COR" "$mm"; do
		expect_rc 0 status --json --once "$name" || return
		flat=$(json_flatten <<<"$OUT") ||
			{ fail "status --json $name: not JSON"; return 1; }
		expect_eq "$(jget "$flat" device)" "$(dm_name cor)" \
			"device of status --json $name" || return
	done
}

st_human()
{
	local t0 t1 re p=$((5 * 1000 / TOTAL))

	t0=$(date +%s%N)
	expect_rc 0 status "$CN" || return
	t1=$(date +%s%N)
	ktap_diag "$OUT"
	# the percentage is rounded down to a tenth
	re="^Progress: .* $((p / 10))\.$((p % 10))%  5/$TOTAL regions hydrated,"
	re+=" 160\.0 KiB of 16\.0 MiB"
	grep -Eq "$re" <<<"$OUT" ||
		{ fail "no progress line in the status"; return 1; }
	grep -Eq '^Rate: ' <<<"$OUT" || { fail "no rate line"; return 1; }
	grep -Eq '^Mode: +rw$' <<<"$OUT" || { fail "no mode line"; return 1; }
	grep -Eq '^Dirty: +1 region ' <<<"$OUT" || { fail "no dirty line"; return 1; }
	grep -Eq '^Metadata: +[0-9]+/[0-9]+ blocks' <<<"$OUT" ||
		{ fail "no metadata line"; return 1; }
	# regions 1-3 and 10 were copied, 20 was written whole
	grep -Eq 'copies_done 4$' <<<"$OUT" || { fail "no copies_done counter"; return 1; }
	expect_cmp $(((t1 - t0) / 1000000)) -ge 1000 \
		"milliseconds taken by status (two samples)" || return
	expect_rc 0 status --once "$CN" || return
	grep -q 'rate unknown' <<<"$OUT" ||
		{ fail "status --once does not say 'rate unknown'"; return 1; }
}

st_wait_timeout()
{
	local t0 t1 h

	h=$(cor_status_field cor hydrated)
	t0=$(date +%s%N)
	expect_rc 124 wait --timeout 2 "$CN" || return
	t1=$(date +%s%N)
	expect_cmp $(((t1 - t0) / 1000000)) -ge 2000 "milliseconds before the timeout" &&
	expect_cmp $(((t1 - t0) / 1000000)) -le 20000 "milliseconds before the timeout" || return
	[[ "$ERR" == *"timed out"* ]] || { fail "wait timed out saying '$ERR'"; return 1; }
	[[ "$OUT" == *"$h/$TOTAL regions"* ]] || { fail "wait printed '$OUT'"; return 1; }
	# watch: plain lines, one per interval, without a terminal
	expect_rc 124 watch --interval 0.5 --timeout 2 "$CN" || return
	expect_cmp "$(grep -c "regions" <<<"$OUT")" -ge 2 "lines printed by watch" || return
	grep -q $'\r' <<<"$OUT" &&
		{ fail "watch drew a progress bar without a terminal"; return 1; }
	# on a terminal: a bar redrawn in place (\r, clear to the end of line)
	on_tty 124 watch --interval 0.5 --timeout 2 "$CN"
	case $? in
	2) ktap_diag "no script(1): the progress bar is not checked"; return 0 ;;
	1) return 1 ;;
	esac
	expect_cmp "$(grep -o $'\r\e\\[K' <<<"$OUT" | wc -l)" -ge 2 "bars drawn by watch" &&
	# (the pty also carries stderr: "timed out ...: H/T regions hydrated")
	expect_cmp "$(grep -c "regions (" <<<"$OUT")" -eq 0 "plain lines on a terminal" || return
	[[ "$OUT" == *"%"* ]] ||
		{ fail "the bar shows no percentage: $(cat -v <<<"$OUT")"; return 1; }
	ktap_diag "watch on a terminal drew: $(tail -c 120 <<<"$OUT" | cat -v)"
}

st_finalize_refused()
{
	local t0 st0

	t0=$(dmsetup table "$(dm_name cor)")
	st0=$(cor_status_fields cor hydrated dirty mode)
	expect_rc 1 finalize --dry-run "$CN" &&
	expect_rc 1 finalize "$CN" || return
	[[ "$ERR" == *"incomplete"* ]] || { fail "finalize refused saying '$ERR'"; return 1; }
	expect_eq "$(dmsetup table "$(dm_name cor)")" "$t0" "table after the refused finalize" &&
	expect_eq "$(cor_status_fields cor hydrated dirty mode)" "$st0" \
		"status after the refused finalize" || return
	dmsetup info "$(dm_name cor)" | grep -q '^State: *ACTIVE' ||
		{ fail "device not active after the refused finalize"; return 1; }
}

st_prefetch_range()
{
	local out want

	# regions 40-42 (sectors, START+LEN) and 50-51 (bytes, START-END)
	run_corctl prefetch "$CN" $((40 * REGION + 1))+$((2 * REGION)) \
		$((50 * REGION / 2))K-$((52 * REGION / 2))K
	if prefetch_unsupported; then
		PREFETCH_SKIP="the dm-cor module has no prefetch message"
		subtest_skip "$PREFETCH_SKIP"
		return
	fi
	[ "$RC" -eq 0 ] || { ktap_diag "$OUT" "$ERR"; fail "prefetch exited $RC"; return 1; }
	want="1-3 10 20 40-42 50-51"
	wait_hydrated cor 10 || { fail "the prefetched regions did not hydrate"; return 1; }
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "$want" \
		"hydrated bitmap after prefetch" || return
	# --wait on regions already hydrated returns at once
	expect_rc 0 prefetch --wait --timeout 10 "$CN" $((40 * REGION))+$((3 * REGION)) || return
	expect_eq "$(cor_bitmap cor hydrated 0 "$TOTAL")" "$want" \
		"hydrated bitmap after prefetch again" || return
	# outside the device
	expect_rc 2 prefetch "$CN" "$ORIGIN_SECTORS"+8 &&
	expect_rc 2 prefetch "$CN" $((ORIGIN_SECTORS - 8))+16 || return
	out=$(cor_status_field cor prefetch_queued 2>/dev/null) &&
		{ wait_status cor prefetch_queued -eq 0 ||
			{ fail "prefetch_queued stays at $out"; return 1; }; }
	return 0
}

st_wait_complete()
{
	local n

	cor_message cor hydration_threshold 32 && cor_message cor hydration_batch_size 16 &&
	cor_message cor hydration start || { fail "cannot start hydration"; return 1; }
	expect_rc 0 wait --timeout 240 "$CN" || return
	expect_eq "$(cor_status_fields cor hydrated total_regions)" "$TOTAL $TOTAL" \
		"hydrated after wait" || return
	n=$(grep -c . <<<"$OUT")
	ktap_diag "wait printed $n lines, the last: $(tail -n 1 <<<"$OUT")"
	[[ "$(tail -n 1 <<<"$OUT")" == *"$TOTAL/$TOTAL regions (100.0%)"* ]] ||
		{ fail "the last line of wait is not 100%"; return 1; }
	# complete: watch and wait return at once
	expect_rc 0 watch "$CN" &&
	expect_rc 0 wait --timeout 5 "$CN" || return
	# on a terminal: one full bar, "done"
	on_tty 0 wait --timeout 5 "$CN"
	case $? in
	1) return 1 ;;
	0) [[ "$OUT" == *"100.0%"*"done"* ]] ||
		{ fail "wait on a terminal drew: $(cat -v <<<"$OUT")"; return 1; } ;;
	esac
	expect_rc 0 status --json "$CN" || return
	expect_eq "$(jget "$(json_flatten <<<"$OUT")" progress.complete)" true "progress.complete"
}

st_finalize()
{
	local sum sum_origin st h d mode t mm b holders

	sum=$(origin_checksum "$COR")
	sum_origin=${COR_ORIGIN_SUMS[$ORIGIN]}
	# region 20 was written: the device is not the origin
	expect_ne "$sum" "$sum_origin" "checksum of the cor device vs the origin" || return
	st=$(cor_status_fields cor hydrated dirty mode)
	read -r h d mode <<<"$st"
	t=${COR_DEV_TABLE[$(dm_name cor)]}
	expect_rc 0 finalize --dry-run "$CN" || return
	expect_eq "$(dmsetup table "$(dm_name cor)" | awk '{ print $3 }')" cor \
		"target after --dry-run" || return
	expect_rc 0 finalize "$CN" || return
	ktap_diag "$OUT"
	# the cor table is gone: its metadata goes to the epilogue's check
	COR_META_PENDING[$META]="$t ${COR_DEV_RO[$(dm_name cor)]:-0} $h $d $mode"
	unset "COR_DEV_TABLE[$(dm_name cor)]"
	expect_eq "$(dmsetup table "$(dm_name cor)")" "0 $ORIGIN_SECTORS linear $DMM 0" \
		"table after finalize" || return
	dmsetup info "$(dm_name cor)" | grep -q '^State: *ACTIVE' ||
		{ fail "device not active after finalize"; return 1; }
	expect_eq "$(origin_checksum "$COR")" "$sum" "content after finalize" || return
	for mm in "$(dev_majmin "$ORIGIN")" "$(dev_majmin "$META")"; do
		b=$(basename "$(readlink -f "/sys/dev/block/$mm")")
		holders=$(ls "/sys/class/block/$b/holders" 2>/dev/null)
		expect_eq "$holders" "" "holders of $mm after finalize" || return
	done
	expect_rc 1 status "$CN" || return
	expect_rc 1 finalize "$CN" || return
	dm_remove cor || { fail "cannot remove the finalized device: $COR_LAST_OUTPUT"; return 1; }
}

# An origin whose second half fails: background hydration stops on errors
st_wait_errors()
{
	local o3 flat

	slice_create dest3 3 4M && slice_create meta3 2 1M || return
	zero_dev "$(dm_path meta3)" || { fail "cannot zero meta3"; return 1; }
	dm_create_lines origin3 "0 4096 linear $ORIGIN 0
4096 4096 error" || { fail "cannot create origin3: $COR_LAST_OUTPUT"; return 1; }
	o3=$(dm_path origin3)
	cor_create cor3 "$o3" "$(dm_path dest3)" "$(dm_path meta3)" "$REGION" \
		background_hydration ||
		{ fail "create cor3: $COR_LAST_OUTPUT"; return 1; }
	if ! cor_status_field cor3 hydration_stopped_on_error >/dev/null; then
		cor_remove cor3
		subtest_skip "the module does not report hydration_stopped_on_error"
		return
	fi
	expect_rc 1 wait --timeout 120 "$(dm_name cor3)" || return
	[[ "$ERR" == *"stopped on errors"* ]] || { fail "wait failed saying '$ERR'"; return 1; }
	expect_eq "$(cor_status_field cor3 hydration_stopped_on_error)" 1 \
		"hydration_stopped_on_error" || return
	expect_rc 0 status --json --once "$(dm_name cor3)" || return
	flat=$(json_flatten <<<"$OUT") || { fail "status --json is not JSON"; return 1; }
	expect_eq "$(jget "$flat" hydration.state)" "stopped on errors" "hydration.state" &&
	expect_eq "$(jget "$flat" hydration.stopped_on_error)" true "hydration.stopped_on_error" &&
	expect_eq "$(jget "$flat" regions.hydrated)" 64 "regions.hydrated" || return
	cor_remove cor3
}

MNT=$COR_TMP/mnt

prefetch_file_body()
{
	local f=$MNT/file r0 r1 h0 h1 out sum

	mkdir -p "$MNT"
	# an ext4 filesystem with a 2 MiB file in several extents, on origin2
	out=$(mkfs.ext4 -q -F -b 4096 -E nodiscard "$ORIGIN2" 2>&1) ||
		{ fail "mkfs.ext4: $out"; return 1; }
	out=$(mount -t ext4 "$ORIGIN2" "$MNT" 2>&1) || { fail "mount $ORIGIN2: $out"; return 1; }
	for i in 0 1 2 3 4 5 6 7; do
		dd if="$DATA" of="$f" bs=256K count=1 seek="$i" conv=notrunc,fsync status=none &&
		dd if="$DATA" of="$MNT/other" bs=64K count=1 seek="$i" conv=notrunc,fsync \
			status=none ||
			{ fail "writing the files failed"; umount "$MNT"; return 1; }
	done
	sum=$(sha256sum <"$f" | awk '{ print $1 }')
	command -v filefrag >/dev/null 2>&1 && ktap_diag "$(filefrag -v "$f" 2>&1 | head -n 20)"
	umount "$MNT" || { fail "umount $ORIGIN2"; return 1; }

	cor_create cor2 "$ORIGIN2" "$DEST2" "$META2" "$REGION" ||
		{ fail "create cor2: $COR_LAST_OUTPUT"; return 1; }
	out=$(mount -t ext4 -o ro,noload "$(dm_path cor2)" "$MNT" 2>&1) ||
		{ fail "mount cor2: $out"; return 1; }
	MOUNTED=1
	wait_quiet cor2 || return
	h0=$(cor_status_field cor2 hydrated)
	# a file elsewhere is refused
	echo x >"$COR_TMP/elsewhere"
	expect_rc 1 prefetch "$C2N" "$COR_TMP/elsewhere" || return
	[[ "$ERR" == *"not on"* ]] || { fail "prefetch of a file elsewhere says '$ERR'"; return 1; }
	expect_rc 0 prefetch --wait --timeout 60 "$C2N" "$f" || return
	ktap_diag "$OUT"
	wait_quiet cor2 || return
	h1=$(cor_status_field cor2 hydrated)
	# 2 MiB of 32 KiB regions: at least 64 more, far from all of them
	expect_cmp $((h1 - h0)) -ge 64 "regions hydrated by the prefetch of the file" &&
	expect_cmp "$h1" -lt $((ORIGIN_SECTORS / REGION / 2)) "regions hydrated in all" || return
	# reading the file's data now (O_DIRECT) never reads the origin
	r0=$(dev_read_sectors "$ORIGIN2")
	out=$(dd if="$f" bs=256K iflag=direct status=none | sha256sum | awk '{ print $1 }')
	r1=$(dev_read_sectors "$ORIGIN2")
	expect_eq "$out" "$sum" "content of the file" &&
	expect_eq $((r1 - r0)) 0 "origin sectors read for the prefetched file"
}

st_prefetch_file()
{
	local rc c

	[ -n "$PREFETCH_SKIP" ] && { subtest_skip "$PREFETCH_SKIP"; return; }
	for c in mkfs.ext4 mount umount; do
		command -v $c >/dev/null 2>&1 || { subtest_skip "$c not found"; return; }
	done
	grep -qw ext4 /proc/filesystems || modprobe ext4 >/dev/null 2>&1
	grep -qw ext4 /proc/filesystems || { subtest_skip "no ext4 in this kernel"; return; }
	MOUNTED=
	prefetch_file_body
	rc=$?
	if [ -n "$MOUNTED" ]; then
		umount "$MNT" || fail "umount $MNT"
	fi
	mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"
	dm_exists cor2 && { cor_remove cor2 || rc=1; }
	return $rc
}

run_subtest "bad arguments exit 2; --help and --version of every command" st_usage
run_subtest "a device that is not cor is refused" st_not_cor
run_subtest "status --json: one JSON object, numbers of dmsetup status" st_json
run_subtest "status: progress, rate, mode, dirty, metadata, counters" st_human
run_subtest "wait times out while hydration is stopped; watch prints lines, a bar on a tty" \
	st_wait_timeout
run_subtest "finalize refuses an incomplete device and changes nothing" st_finalize_refused
run_subtest "prefetch of ranges hydrates exactly their regions" st_prefetch_range
run_subtest "wait returns 0 once background hydration completes" st_wait_complete
run_subtest "finalize: linear over the destination, same content, origin released" st_finalize
run_subtest "prefetch of a file hydrates its extents; files elsewhere refused" st_prefetch_file
run_subtest "wait fails when background hydration stops on errors" st_wait_errors

cor_test_done
