#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_hydration.sh: background hydration, its messages, prefetch, the
# failure rule, and hydration across suspend, reload and concurrent I/O.
#
# A 16 MiB stamped origin in 32 KiB regions, seen directly, through
# dm-delay (10 ms or 250 ms per read) and through a linear+error table.
# Progress is made deterministic by suspending the dm-delay origin: the
# copies already issued complete, the next ones wait in the suspended
# device, so "hydrating" then counts exactly what hydration keeps in flight
# (the threshold when idle, one batch while a user read is in flight).
#
#  1. background_hydration copies every region exactly once (copies_done,
#     origin_read_sectors, the origin's own sysfs counters), "dmsetup wait"
#     on the event number from before the table returns once every region
#     is hydrated, hydration_active drops to 0, destination == origin.
#  2. The completion is committed before its event: a copy of the metadata
#     device taken right when "dmsetup wait" returns loads with every
#     region hydrated.
#  3. hydration stop/start; hydration_threshold and hydration_batch_size
#     change the core args, the number of regions in flight and the origin
#     I/O size; bad values are refused with a log line and change nothing.
#  4. prefetch copies exactly the covering regions of (unaligned) ranges,
#     with background hydration off; ranges are copied in the order queued
#     and before the background scan; bad ranges are refused.
#  5. At most 1024 prefetch ranges are queued, EBUSY beyond; a region queued
#     twice is copied once.  corctl sends the 1024 messages (one process:
#     a dmsetup call takes 150-600 ms under TCG); skipped without corctl.
#  6. fio randrw (crc32c verify) while hydration runs: fio verifies, and
#     after hydration completes fio's verify_only passes again, every block
#     fio did not write reads as the origin, dirty = the regions fio wrote.
#  7. suspend pauses hydration, resume continues it; a table reload
#     mid-hydration continues (hydration started by message), a reload of
#     a stopped device stays stopped; the data is the origin's.
#  8. origin read errors: a failed batch is retried with backoff, after 5
#     failed attempts hydration stops (stopped_on_error, hydration_errors,
#     a dm event, a log line), no further retries; a prefetch of the bad
#     region tries again and gives up the same way; after the origin is
#     repaired "hydration start" completes.
#
# COR_HYD_ONLY="N ..." runs only those subtests (the others are skipped).

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

cor_test_init
cor_require_cmd fio timeout comm date
CORCTL=$(cor_tool corctl)
ktap_plan 8

SEED=$((RANDOM * 32768 + RANDOM))
FIO_SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors: 32 KiB
DFLT_BATCH=$((4096 / REGION))	# the default batch: 2 MiB
BPR=$((REGION / 8))		# 4 KiB blocks per region
FIO_TIMEOUT=${COR_FIO_TIMEOUT:-150}

cor_setup_devs 16M 16M 1M || cor_bail "cannot create the test devices"
stamp_origin "$SEED" || cor_bail "cannot stamp the origin"
N=$ORIGIN_SECTORS
TOTAL=$((N / REGION))
ORIGIN_SUM=${COR_ORIGIN_SUMS[$ORIGIN]}
dm_create odelay "0 $N delay $ORIGIN 0 10" ||
	cor_bail "cannot create the delayed origin: $COR_LAST_OUTPUT"
dm_create oslow "0 $N delay $ORIGIN 0 250" ||
	cor_bail "cannot create the slow origin: $COR_LAST_OUTPUT"
ODELAY=$(dm_path odelay)
OSLOW=$(dm_path oslow)

# Whatever happens, resume suspended devices (a frozen origin would hang the
# teardown) and stop background jobs before the epilogue.
BG_PIDS=()
# shellcheck disable=SC2317 # called from the EXIT trap
hyd_cleanup()
{
	local n p

	for n in $(cor_leftover_devs); do
		dmsetup info "$n" 2>/dev/null | grep -q '^State: *SUSPENDED' &&
			dmsetup resume "$n" >/dev/null 2>&1
	done
	for p in "${BG_PIDS[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
}
# shellcheck disable=SC2317 # the EXIT trap
hyd_exit()
{
	local rc=$?

	hyd_cleanup
	(exit $rc)
	cor_epilogue
}
trap hyd_exit EXIT

########################################################################
# helpers

now_ms()
{
	echo $(($(date +%s%N) / 1000000))
}

# event_nr NAME: the device's dm event counter
event_nr()
{
	dmsetup info "$(dm_name "$1")" 2>/dev/null | sed -n 's/^Event number: *//p'
}

# new_devs TAG: a fresh 16 MiB destination and a zeroed 1 MiB metadata
# slice; sets D_DEST and D_META
new_devs()
{
	slice_create "dest$1" 1 16M && slice_create "meta$1" 2 1M || return 1
	D_DEST=$(dm_path "dest$1")
	D_META=$(dm_path "meta$1")
	zero_dev "$D_META" || { fail "cannot zero $D_META"; return 1; }
}

# freeze DEV / thaw DEV: suspend a (dm-delay) origin so that new bios wait
# in it; those in flight complete first
freeze()
{
	local out

	out=$(dmsetup suspend --nolockfs "$(dm_name "$1")" 2>&1) ||
		{ fail "suspend $1: $out"; return 1; }
}

thaw()
{
	local out

	out=$(dmsetup resume "$(dm_name "$1")" 2>&1) ||
		{ fail "resume $1: $out"; return 1; }
}

# stays NAME "FIELDS" "VALUES" MS: the fields keep these values, sampled
# for MS milliseconds (an observation window, not a synchronisation)
stays()
{
	local name=$1 fields=$2 want=$3 end v n=0

	end=$(($(now_ms) + $4))
	while :; do
		# shellcheck disable=SC2086 # the field names are split
		v=$(cor_status_fields "$name" $fields)
		n=$((n + 1))
		if [ "$v" != "$want" ]; then
			fail "$name: '$fields' became '$v' (sample $n), expected to stay '$want'"
			return 1
		fi
		[ "$(now_ms)" -ge "$end" ] && break
		sleep 0.25
	done
}

# expect_field NAME FIELD VALUE
expect_field()
{
	expect_eq "$(cor_status_field "$1" "$2")" "$3" "$1 $2"
}

# expect_is_origin WHAT DEV: DEV holds the whole origin
expect_is_origin()
{
	local sum

	sum=$(origin_checksum "$2")
	[ "$sum" == "$ORIGIN_SUM" ] && return 0
	run_diag "$COR_PATTERN" verify "$2" 0 all "$SEED" --max-report 4
	fail "$1: $2 differs from the origin (sha256 $sum, origin $ORIGIN_SUM)"
}

# tunables NAME T B: set hydration_threshold and hydration_batch_size, check
# the core args
tunables()
{
	expect_ok "hydration_threshold $2" cor_message "$1" hydration_threshold "$2" &&
	expect_ok "hydration_batch_size $3" cor_message "$1" hydration_batch_size "$3" &&
	expect_eq "$(cor_status_field "$1" core_args)" \
		"hydration_threshold $2 hydration_batch_size $3" "core args of $1"
}

# send_bad NAME MESSAGE: the message must fail ("--": dmsetup must not take
# "-1" for an option)
send_bad()
{
	local out

	# shellcheck disable=SC2086 # the message is split into words
	if out=$(dmsetup message -- "$(dm_name "$1")" 0 $2 2>&1 </dev/null); then
		fail "message '$2' succeeded (reply '$out'), must fail"
		return 1
	fi
}

# send_bad_all NAME LIST: every line of LIST must fail and log a "cor:"
# line; the status line, table and bitmaps are unchanged
send_bad_all()
{
	local name=$1 st0 t0 h0 before msg n=0 new

	st0=$(cor_status_line "$name")
	t0=$(dmsetup table "$(dm_name "$name")")
	h0=$(cor_bitmap "$name" hydrated 0 "$TOTAL")
	before=$(klog_count)
	while IFS= read -r msg; do
		n=$((n + 1))
		send_bad "$name" "$msg"
	done <<<"$2"
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1
	new=$(klog_new_since "$before" | grep -c ': cor: ')
	expect_cmp "$new" -ge "$n" "kernel log lines for $n refused messages" || return
	expect_eq "$(cor_status_line "$name")" "$st0" "status after the refused messages" &&
	expect_eq "$(dmsetup table "$(dm_name "$name")")" "$t0" \
		"table after the refused messages" &&
	expect_eq "$(cor_bitmap "$name" hydrated 0 "$TOTAL")" "$h0" \
		"hydrated bitmap after the refused messages"
}

# klog_has SINCE NAME REGEX: a kernel log line about dm device NAME
# (printed as major:minor) after the first SINCE lines matches REGEX
klog_has()
{
	klog_new_since "$1" | grep -i "cor: $(dm_majmin "$2"): " | grep -qiE "$3"
}

# wait_done NAME TIMEOUT: hydration completes: every region hydrated,
# nothing in flight, hydration_active 0
wait_done()
{
	wait_status "$1" hydrated -ge "$TOTAL" "$2" &&
	wait_status "$1" hydrating -eq 0 &&
	wait_status "$1" hydration_active -eq 0
}

########################################################################
# 1, 2: background hydration to the end

WAIT_OUT=$COR_TMP/wait.out
META_SNAP=$COR_TMP/meta.snap

st_background()
{
	local name e0 pid out st r0 r1 rc t0 msg

	name=$(dm_name bg)
	# created without a table, so that the event number is read before
	# hydration can start
	out=$(dmsetup create "$name" --notable 2>&1) ||
		{ fail "create bg without a table: $out"; return 1; }
	COR_DEVS+=("$name")
	e0=$(event_nr bg)
	expect_num "$e0" "event number of bg" || return
	r0=$(dev_read_sectors "$ORIGIN")
	# waits for the next event; then, at once, a copy of the metadata
	# (the completion must be committed before the event) and the status
	(
		timeout 60 dmsetup wait "$name" "$e0"
		echo "rc $?"
		dd if="$META" of="$META_SNAP" bs=1M iflag=direct status=none
		dmsetup status "$name"
	) >"$WAIT_OUT" 2>&1 &
	pid=$!
	BG_PIDS+=("$pid")
	out=$(cor_table "$ORIGIN" "$DEST" "$META" "$REGION" background_hydration \
		hydration_threshold 8 hydration_batch_size 4 | dmsetup load "$name" 2>&1) &&
	out=$(dmsetup resume "$name" 2>&1) ||
		{ fail "load with background_hydration: $out"; return 1; }
	COR_COR_DEVS+=("$name")
	COR_DEV_TABLE[$name]="$N $ORIGIN $DEST $META $REGION"
	t0=$(now_ms)
	wait "$pid"
	ktap_diag "resume to the completion event: $(($(now_ms) - t0)) ms"
	rc=$(sed -n 's/^rc //p' "$WAIT_OUT")
	st=$(grep ' cor ' "$WAIT_OUT" | cor_status_parse | sed -n 's/^hydrated=//p')
	ktap_diag "dmsetup wait $e0 returned $rc, status then: $(grep ' cor ' "$WAIT_OUT")"
	expect_eq "$rc" 0 "'timeout 60 dmsetup wait bg $e0' exit status" || return
	expect_eq "$st" "$TOTAL" "hydrated regions when the event was seen" || return
	wait_done bg 60 || { fail "hydration did not finish"; return 1; }
	expect_eq "$(cor_status_fields bg hydrated total_regions hydrating dirty mode)" \
		"$TOTAL $TOTAL 0 0 rw" "hydrated total hydrating dirty mode" || return
	expect_eq "$(cor_status_fields bg copies_done origin_read_sectors copies_failed \
		origin_read_errors)" "$TOTAL $N 0 0" \
		"copies_done origin_read_sectors copies_failed origin_read_errors" || return
	msg="hydration_active hydration_stopped_on_error hydration_errors prefetch_queued"
	expect_eq "$(cor_status_fields bg hydration_active hydration_stopped_on_error \
		hydration_errors prefetch_queued)" "0 0 0 0" "$msg" || return
	r1=$(dev_read_sectors "$ORIGIN")
	expect_eq $((r1 - r0)) "$N" "sectors read from the origin (sysfs)" || return
	expect_eq "$(cor_bitmap bg hydrated 0 "$TOTAL")" "0-$((TOTAL - 1))" \
		"hydrated bitmap" || return
	expect_is_origin "destination after background hydration" "$DEST" || return
	expect_is_origin "cor device after background hydration" "$(dm_path bg)" || return
	klog_has 0 bg "every region is hydrated" ||
		fail "no kernel log line saying that every region of bg is hydrated"
}

st_completion_committed()
{
	local h msg

	[ -s "$META_SNAP" ] || { subtest_skip "no metadata copy (subtest 1 failed early)"; return; }
	slice_create metasnap 2 1M && slice_create destsnap 1 16M || return
	msg="the metadata copy taken at the completion event is all zeroes (never committed)"
	[ -n "$(tr -d '\0' <"$META_SNAP" | head -c 1)" ] || ktap_diag "$msg"
	dd if="$META_SNAP" of="$(dm_path metasnap)" bs=1M oflag=direct status=none ||
		{ fail "cannot write the metadata copy"; return 1; }
	cor_create snap "$ORIGIN" "$(dm_path destsnap)" "$(dm_path metasnap)" "$REGION" ||
		{ fail "cor on the metadata copy: $COR_LAST_OUTPUT"; return 1; }
	h=$(cor_status_field snap hydrated)
	cor_remove snap || return
	if [ "$h" != "$TOTAL" ]; then
		# for the report: what the metadata says now (the periodic
		# commit has run since)
		msg="a copy of the metadata taken now (seconds later) holds"
		zero_dev "$(dm_path metasnap)" &&
		dd if="$META" of="$(dm_path metasnap)" bs=1M \
			iflag=direct oflag=direct status=none &&
		cor_create snap "$ORIGIN" "$(dm_path destsnap)" "$(dm_path metasnap)" "$REGION" &&
		ktap_diag "$msg $(cor_status_field snap hydrated) hydrated regions" &&
		cor_remove snap
	fi
	expect_eq "$h" "$TOTAL" \
		"hydrated regions in the metadata as committed when the completion event fired"
}

########################################################################
# 3: start, stop, threshold and batch size

BAD_TUNABLES="hydration_threshold 0
hydration_threshold 4097
hydration_threshold -1
hydration_threshold abc
hydration_threshold
hydration_batch_size 0
hydration_batch_size 4097
hydration_batch_size -1
hydration_batch_size abc
hydration_batch_size
hydration begin"

st_start_stop()
{
	local h1 h2 s0 i0 s1 i1 s2 i2 s3 i3 c1 c2 o0 pid dev blk msg

	new_devs ss || return
	cor_create ss "$ODELAY" "$D_DEST" "$D_META" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	dev=$(dm_path ss)
	expect_eq "$(cor_status_fields ss hydrated hydrating hydration_active core_args)" \
		"0 0 0 hydration_threshold $((4 * DFLT_BATCH)) hydration_batch_size $DFLT_BATCH" \
		"fresh device (default tunables)" || return
	tunables ss 1 1 || return
	# bad values: refused, nothing changes (hydration does not start)
	send_bad_all ss "$BAD_TUNABLES" || return

	# threshold 1, batch 1: one region in flight, one region per origin read
	s0=$(dev_read_sectors "$ODELAY") i0=$(dev_read_ios "$ODELAY")
	expect_ok "hydration start" cor_message ss hydration start || return
	expect_field ss hydration_active 1 || return
	wait_status ss hydrated -ge 16 30 || { fail "hydration did not progress"; return 1; }
	freeze odelay || return
	wait_status ss hydrating -eq 1 && stays ss hydrating 1 500 ||
		{ thaw odelay; fail "threshold 1: not exactly 1 region in flight"; return 1; }
	expect_ok "hydration stop" cor_message ss hydration stop
	thaw odelay || return
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1
	expect_field ss hydration_active 0 || return
	wait_status ss hydrating -eq 0 || return
	h1=$(cor_status_field ss hydrated)
	stays ss "hydrated hydrating copies_done" "$h1 0 $h1" 750 || return
	expect_cmp "$h1" -lt "$TOTAL" "(test) regions hydrated before the stop" || return
	s1=$(dev_read_sectors "$ODELAY") i1=$(dev_read_ios "$ODELAY")
	expect_eq $((s1 - s0)) $((h1 * REGION)) "origin sectors read for $h1 copies" &&
	expect_eq $((i1 - i0)) "$h1" "origin reads for $h1 copies of one region" &&
	expect_field ss origin_read_sectors $((h1 * REGION)) || return

	# threshold 8, batch 8: one copy of 8 regions in flight; stopped while
	# the origin is suspended, exactly that copy completes: 8 regions in
	# one origin read (the target's own bios, no sub-jobs)
	tunables ss 8 8 || return
	freeze odelay || return
	expect_ok "hydration start" cor_message ss hydration start &&
	wait_status ss hydrating -eq 8 && stays ss hydrating 8 500 ||
		{ thaw odelay; fail "threshold 8, batch 8: not 8 regions in flight"; return 1; }
	expect_ok "hydration stop" cor_message ss hydration stop
	thaw odelay || return
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1
	wait_status ss hydrating -eq 0 || return
	h2=$(cor_status_field ss hydrated)
	s2=$(dev_read_sectors "$ODELAY") i2=$(dev_read_ios "$ODELAY")
	msg="batch 1: $((i1 - i0)) origin reads of $(((s1 - s0) / (i1 > i0 ? i1 - i0 : 1)))"
	msg+=" sectors;"
	ktap_diag "$msg" "batch 8: $((i2 - i1)) origin reads of $((s2 - s1)) sectors in all"
	expect_eq $((h2 - h1)) 8 "regions hydrated by one batch of 8" &&
	expect_eq $((s2 - s1)) $((8 * REGION)) "origin sectors read by one batch of 8" &&
	expect_cmp $(((s2 - s1) / (i2 > i1 ? i2 - i1 : 1))) -ge $((2 * REGION)) \
		"average origin read with batch 8 (sectors)" || return

	# threshold 8, batch 2, idle: 4 copies of 2 regions in flight
	tunables ss 8 2 || return
	freeze odelay || return
	msg="idle, threshold 8, batch 2: not 8 regions in flight"
	expect_ok "hydration start" cor_message ss hydration start &&
	wait_status ss hydrating -eq 8 && stays ss hydrating 8 500 ||
		{ thaw odelay; fail "$msg"; return 1; }
	expect_ok "hydration stop" cor_message ss hydration stop
	thaw odelay || return
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1
	wait_status ss hydrating -eq 0 || return
	expect_field ss hydrated $((h2 + 8)) || return
	s3=$(dev_read_sectors "$ODELAY") i3=$(dev_read_ios "$ODELAY")
	expect_eq "$((s3 - s2)) $((i3 - i2))" "$((8 * REGION)) 4" \
		"origin sectors and reads of 4 batches of 2" || return

	# yield: while a user read is in flight, one batch (2 regions) only
	freeze odelay || return
	o0=$(cor_status_field ss origin_read_sectors)
	blk=$(((TOTAL - 1) * BPR + 1))		# a block of the last region
	( timeout 60 dd if="$dev" of="$COR_TMP/yread" bs=4096 skip="$blk" count=1 \
		iflag=direct status=none; echo $? >"$COR_TMP/yread.rc" ) &
	pid=$!
	BG_PIDS+=("$pid")
	wait_status ss origin_read_sectors -ge $((o0 + 8)) ||
		{ thaw odelay; fail "the user read did not reach the origin"; return 1; }
	msg="user read in flight, batch 2: not exactly 2 regions in flight"
	expect_ok "hydration start" cor_message ss hydration start &&
	wait_status ss hydrating -ge 2 && stays ss hydrating 2 1000 ||
		{ thaw odelay; fail "$msg"; return 1; }
	thaw odelay || return
	wait "$pid"
	expect_eq "$(cat "$COR_TMP/yread.rc" 2>/dev/null)" 0 "user read exit status" || return
	dd if="$ORIGIN" of="$COR_TMP/yread.o" bs=4096 skip="$blk" count=1 iflag=direct status=none
	cmp -s "$COR_TMP/yread" "$COR_TMP/yread.o" ||
		{ fail "user read returned wrong data"; return 1; }

	# and to the end
	c1=$(cor_status_field ss copies_done)
	wait_done ss 60 || { fail "hydration did not finish"; return 1; }
	c2=$(cor_status_field ss copies_done)
	ktap_diag "copies: $c1 before the last phase, $c2 at the end"
	expect_eq "$(cor_status_fields ss hydrated copies_done copies_failed mode)" \
		"$TOTAL $TOTAL 0 rw" "hydrated copies_done copies_failed mode" || return
	expect_is_origin "destination" "$D_DEST" || return
	cor_remove ss
}

########################################################################
# 4: prefetch

# ranges_expand "0-3 7": one number a line
ranges_expand()
{
	echo "$*" | tr ' ' '\n' | awk -F- 'NF == 1 && $1 != "" { print $1 }
		NF == 2 { for (i = $1; i <= $2; i++) print i }'
}

# check_order SAMPLE SEQ DONE: SAMPLE (the hydrated bitmap) holds a prefix
# of the sequence SEQ (regions one a line, in the order they must be
# copied) and, unless all of SEQ is hydrated, nothing but SEQ and DONE
# (regions hydrated before); prints the prefix length
check_order()
{
	ranges_expand "$1" | awk -v seqf="$2" -v done="$3" '
		BEGIN {
			while ((getline l < seqf) > 0) { seq[++n] = l; inseq[l] = 1 }
			m = split(done, d, " ")
			for (i = 1; i <= m; i++) isdone[d[i]] = 1
		}
		{ h[$1] = 1; if (!($1 in inseq) && !($1 in isdone)) extra = extra " " $1 }
		END {
			for (k = 0; k < n && (seq[k + 1] in h); k++) ;
			for (i = k + 1; i <= n; i++) {
				if (!(seq[i] in h))
					continue
				print "out of order: " seq[i] " hydrated, " seq[k + 1] " not"
				exit 1
			}
			if (k < n && extra != "") { print "scan before prefetch:" extra; exit 1 }
			print k
		}'
}

st_prefetch()
{
	local a_start a_len want out seq="$COR_TMP/seq" st samples=0 mid=0 q
	local bad t0 h0 dev msg

	new_devs pf || return
	cor_create pf "$OSLOW" "$D_DEST" "$D_META" "$REGION" \
		hydration_threshold 1 hydration_batch_size 1 ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	dev=$(dm_path pf)
	# A: with background hydration off, an unaligned range straddling
	# regions 10-13 and whole regions 40-43
	a_start=$((10 * REGION + 5)) a_len=$((3 * REGION))
	want=$(ranges_normalize "$(regions_of "$a_start" "$a_len" "$REGION") 40-43")
	expect_eq "$want" "10-13 40-43" "(test) covering regions" || return
	freeze oslow || return
	expect_ok "prefetch $a_start $a_len" cor_message pf prefetch "$a_start" "$a_len" &&
	expect_ok "prefetch 40 regions" cor_message pf prefetch $((40 * REGION)) $((4 * REGION)) &&
	wait_status pf hydrating -eq 1 ||
		{ thaw oslow; fail "prefetch did not start a copy"; return 1; }
	# one region in flight (threshold 1), 7 still queued
	expect_eq "$(cor_status_fields pf prefetch_queued hydrating hydration_active hydrated)" \
		"7 1 0 0" \
		"prefetch_queued hydrating hydration_active hydrated while the origin is suspended"
	thaw oslow || return
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1
	wait_status pf prefetch_queued -eq 0 && wait_status pf hydrating -eq 0 ||
		{ fail "prefetch did not finish"; return 1; }
	expect_eq "$(cor_bitmap pf hydrated 0 "$TOTAL")" "$want" \
		"hydrated bitmap after prefetch" || return
	expect_eq "$(cor_status_fields pf hydrated copies_done origin_read_sectors copies_failed \
		hydration_active)" "8 8 $((8 * REGION)) 0 0" \
		"hydrated copies_done origin_read_sectors copies_failed hydration_active" || return
	expect_devs_equal "destination regions 10-13" \
		"$D_DEST" "$ORIGIN" $((10 * REGION)) $((4 * REGION)) &&
	expect_devs_equal "destination regions 40-43" \
		"$D_DEST" "$ORIGIN" $((40 * REGION)) $((4 * REGION)) || return
	stays pf "hydrated hydrating" "8 0" 500 || return

	# B: ranges in the order queued (300-305, then 200-205), before the
	# background scan started after them
	{ seq 300 305; seq 200 205; } >"$seq"
	freeze oslow || return
	expect_ok "prefetch 300-305" cor_message pf prefetch $((300 * REGION)) $((6 * REGION)) &&
	expect_ok "prefetch 200-205" \
		cor_message pf prefetch $((200 * REGION + 1)) $((6 * REGION - 1)) &&
	expect_ok "hydration start" cor_message pf hydration start &&
	wait_status pf hydrating -eq 1 ||
		{ thaw oslow; fail "prefetch did not start a copy"; return 1; }
	expect_eq "$(cor_status_fields pf prefetch_queued hydrating hydration_active)" "11 1 1" \
		"prefetch_queued hydrating hydration_active while the origin is suspended"
	thaw oslow || return
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1
	t0=$SECONDS
	while :; do
		q=$(cor_status_field pf prefetch_queued)
		st=$(cor_bitmap pf hydrated 0 "$TOTAL")
		if ! out=$(check_order "$st" "$seq" "$(ranges_expand "$want" | tr '\n' ' ')"); then
			fail "sample $samples: $out (hydrated: $st)"
			cor_message pf hydration stop
			return 1
		fi
		samples=$((samples + 1))
		[ "$out" -gt 0 ] && [ "$out" -lt 12 ] && mid=$((mid + 1))
		[ "$out" -eq 12 ] && [ "$q" -eq 0 ] && break
		[ $((SECONDS - t0)) -lt 30 ] ||
			{ fail "prefetch of 12 regions did not finish in 30s"; break; }
		sleep 0.1
	done
	expect_ok "hydration stop" cor_message pf hydration stop || return
	wait_status pf hydrating -eq 0 || return
	st=$(cor_bitmap pf hydrated 0 "$TOTAL")
	out=$(check_order "$st" "$seq" "") || { fail "$out"; return 1; }
	msg="$samples samples, $mid in the middle of the prefetched ranges;"
	msg+=" hydrated at the end: $st"
	ktap_diag "$msg"
	expect_eq "$out" 12 "prefetched regions hydrated" || return
	expect_devs_equal "destination regions 300-305" \
		"$D_DEST" "$ORIGIN" $((300 * REGION)) $((6 * REGION)) &&
	expect_devs_equal "destination regions 200-205" \
		"$D_DEST" "$ORIGIN" $((200 * REGION)) $((6 * REGION)) || return

	# C: bad ranges refused, nothing changes; the last sector is fine
	bad="prefetch
prefetch 0
prefetch 0 0
prefetch $N 1
prefetch $((N - 1)) 2
prefetch 0 $((N + 1))
prefetch abc 8
prefetch 0 1x
prefetch -1 8
prefetch 8 18446744073709551615"
	send_bad_all pf "$bad" || return
	expect_field pf prefetch_queued 0 || return
	h0=$(cor_status_field pf hydrated)
	expect_eq "$(cor_bitmap pf hydrated $((TOTAL - 1)) 1)" "" \
		"(test) last region not hydrated yet" || return
	expect_ok "prefetch of the last sector" cor_message pf prefetch $((N - 1)) 1 || return
	wait_status pf hydrated -ge $((h0 + 1)) && wait_status pf hydrating -eq 0 ||
		{ fail "prefetch of the last sector did not hydrate"; return 1; }
	expect_eq "$(cor_bitmap pf hydrated $((TOTAL - 1)) 1)" "$((TOTAL - 1))" \
		"last region after its prefetch" &&
	expect_field pf hydrated $((h0 + 1)) || return

	cor_remove pf
}

########################################################################
# 5: the prefetch queue limit

st_prefetch_limit()
{
	local name out i t0 ranges=()

	[ -n "$CORCTL" ] ||
		{ subtest_skip "corctl not built (make -C tools/dm-cor)"; return; }
	new_devs pl || return
	cor_create pl "$ORIGIN" "$D_DEST" "$D_META" "$REGION" \
		hydration_threshold 8 hydration_batch_size 4 ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	name=$(dm_name pl)
	# suspended, the device takes nothing from the queue
	out=$(dmsetup suspend "$name" 2>&1) || { fail "suspend pl: $out"; return 1; }
	# range i: sector i * REGION / 2, one sector, so each region twice;
	# no two adjacent, so corctl sends each as its own message, all from
	# one process (1024 dmsetup calls take minutes under TCG)
	for ((i = 0; i < 1024; i++)); do
		ranges+=("$((i * REGION / 2))+1")
	done
	t0=$(now_ms)
	out=$("$CORCTL" prefetch "$name" "${ranges[@]}" 2>&1) ||
		fail "1024 prefetch ranges refused: $out"
	ktap_diag "corctl sent 1024 prefetch messages in $(($(now_ms) - t0)) ms: $out"
	if [ ${#SUBTEST_ERRORS[@]} -eq 0 ]; then
		expect_field pl prefetch_queued 1024
		if out=$(dmsetup message "$name" 0 prefetch 0 8 2>&1); then
			fail "prefetch number 1025 accepted"
		else
			grep -qi busy <<<"$out" ||
				fail "prefetch number 1025 failed, but not with EBUSY: $out"
		fi
		expect_eq "$(cor_status_fields pl prefetch_queued hydrated hydrating)" "1024 0 0" \
			"prefetch_queued hydrated hydrating while suspended"
	fi
	thaw pl || return
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1
	wait_status pl prefetch_queued -eq 0 60 && wait_status pl hydrating -eq 0 ||
		{ fail "the queued ranges were not consumed"; return 1; }
	expect_eq "$(cor_status_fields pl hydrated copies_done copies_failed hydration_active \
		mode)" "$TOTAL $TOTAL 0 0 rw" \
		"hydrated copies_done copies_failed hydration_active mode" || return
	expect_is_origin "destination" "$D_DEST" || return
	cor_remove pl
}

########################################################################
# 6: fio under hydration

FIO_JOB=$COR_TMP/hyd.fio
FIO_LOG=$COR_TMP/iolog
WRITTEN=$COR_TMP/written

run_fio()
{
	local what=$1 out rc

	shift
	out=$(timeout -k 10 "$FIO_TIMEOUT" fio "$FIO_JOB" "$@" 2>&1)
	rc=$?
	ktap_diag "$(grep -E '^ *(read|write|READ|WRITE):' <<<"$out")"
	if [ $rc -ne 0 ]; then
		ktap_diag "$(grep -v '^ *lat\|clat\|slat\|percentiles\|^ *|' <<<"$out" |
			tail -n 30)"
		[ $rc -eq 124 ] && fail "$what: fio did not finish in ${FIO_TIMEOUT}s"
		fail "$what: fio exited $rc"
		return 1
	fi
}

st_fio()
{
	local dev h0 a0 h1 a1 n extra missing want t0 msg

	new_devs fh || return
	# Two regions in flight: copies race fio's writes, yet hydration is
	# far from done when fio starts, even on the debug kernel (with 4 in
	# flight in batches of 2 it had hydrated 214 of 512 regions by then)
	cor_create fh "$ODELAY" "$D_DEST" "$D_META" "$REGION" \
		hydration_threshold 2 hydration_batch_size 1 ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	dev=$(dm_path fh)
	cat >"$FIO_JOB" <<EOF
[global]
thread
filename=$dev
ioengine=libaio
direct=1
iodepth=8
rw=randrw
rwmixread=50
bssplit=4k/60:64k/40
blockalign=4k
offset=2M
size=8M
verify=crc32c
verify_fatal=1
serialize_overlap=1
randseed=$FIO_SEED
[hyd]
EOF
	expect_ok "hydration start" cor_message fh hydration start || return
	read -r h0 a0 <<<"$(cor_status_fields fh hydrated hydration_active)"
	t0=$SECONDS
	run_fio "fio randrw during hydration" --write_iolog="$FIO_LOG" || return
	read -r h1 a1 <<<"$(cor_status_fields fh hydrated hydration_active)"
	msg="fio ran $((SECONDS - t0))s; hydrated/active: $h0/$a0 at its start,"
	msg+=" $h1/$a1 at its end"
	ktap_diag "$msg"
	expect_eq "$a0" 1 "hydration_active when fio started" &&
	expect_cmp "$h0" -lt $((TOTAL / 2)) "(test) regions hydrated when fio started" || return
	awk '
		$(NF - 2) == "write" {
			for (o = $(NF - 1); o < $(NF - 1) + $NF; o += 4096)
				print int(o / 4096)
		}' "$FIO_LOG" | sort -n -u >"$WRITTEN"
	n=$(wc -l <"$WRITTEN")
	expect_cmp "$n" -gt 0 "blocks written by fio" || return
	wait_done fh 90 || { fail "hydration did not finish after fio"; return 1; }
	expect_eq "$(cor_status_fields fh hydrated copies_failed hydration_stopped_on_error mode)" \
		"$TOTAL 0 0 rw" "hydrated copies_failed hydration_stopped_on_error mode" || return
	# fio's blocks still hold what it wrote (no copy overwrote them)...
	run_fio "fio verify_only after hydration" --verify_only=1 || return
	# ...and every other block is the origin's
	"$COR_PATTERN" verify "$dev" 0 all "$SEED" --max-report 1000000 2>&1 |
		sed -n 's/^cor-pattern: .* block \([0-9][0-9]*\) (byte .*/\1/p' |
		sort -n -u >"$COR_TMP/mismatch"
	extra=$(comm -23 "$COR_TMP/mismatch" "$WRITTEN" | wc -l)
	missing=$(comm -13 "$COR_TMP/mismatch" "$WRITTEN" | wc -l)
	if [ "$extra" -ne 0 ] || [ "$missing" -ne 0 ]; then
		msg="not written by fio, not the origin: "
		msg+="$(comm -23 "$COR_TMP/mismatch" "$WRITTEN" | head -n 5 | tr '\n' ' ')"
		ktap_diag "$msg"
		msg="written by fio, reads as the origin: "
		msg+="$(comm -13 "$COR_TMP/mismatch" "$WRITTEN" | head -n 5 | tr '\n' ' ')"
		ktap_diag "$msg"
		msg="$extra blocks fio did not write differ from the origin,"
		msg+=" $missing written blocks read as the origin"
		fail "$msg"
		return 1
	fi
	want=$(ranges_normalize "$(awk -v bpr="$BPR" '{ print int($1 / bpr) }' "$WRITTEN" |
		sort -n -u | tr '\n' ' ')")
	expect_eq "$(cor_bitmap fh dirty 0 "$TOTAL")" "$want" \
		"dirty bitmap vs the regions fio wrote" || return
	ktap_diag "fio wrote $n blocks in $(ranges_count "$want") regions"
	cor_remove fh
}

########################################################################
# 7: suspend, resume, reload

# reload NAME: the same table again (load, suspend, resume)
reload()
{
	local name t out

	name=$(dm_name "$1")
	t=$(dmsetup table "$name") || { fail "table of $1"; return 1; }
	out=$(printf '%s\n' "$t" | dmsetup load "$name" 2>&1) || { fail "load $1: $out"; return 1; }
	out=$(dmsetup suspend "$name" 2>&1) || { fail "suspend $1: $out"; return 1; }
	RELOAD_HYDRATED=$(cor_status_field "$1" hydrated)
	out=$(dmsetup resume "$name" 2>&1) || { fail "resume $1: $out"; return 1; }
}

st_suspend_reload()
{
	local hs h out

	new_devs sr || return
	# threshold 1 on a 40 ms origin (20 s for the device): slow enough that
	# every step below happens mid-hydration, even on a debug kernel; the
	# last one is sped up
	dm_create osr "0 $N delay $ORIGIN 0 40" ||
		{ fail "cannot create the 40 ms origin: $COR_LAST_OUTPUT"; return 1; }
	cor_create sr "$(dm_path osr)" "$D_DEST" "$D_META" "$REGION" \
		hydration_threshold 1 hydration_batch_size 1 ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	expect_ok "hydration start" cor_message sr hydration start || return
	wait_status sr hydrated -ge 16 30 || { fail "hydration did not progress"; return 1; }
	# suspend: nothing in flight, nothing moves
	out=$(dmsetup suspend "$(dm_name sr)" 2>&1) || { fail "suspend: $out"; return 1; }
	hs=$(cor_status_field sr hydrated)
	stays sr "hydrated hydrating" "$hs 0" 1000
	out=$(dmsetup resume "$(dm_name sr)" 2>&1) || { fail "resume: $out"; return 1; }
	[ ${#SUBTEST_ERRORS[@]} -eq 0 ] || return 1
	expect_cmp "$hs" -lt "$TOTAL" "(test) regions hydrated at the suspend" || return
	wait_status sr hydrated -ge $((hs + 16)) 30 ||
		{ fail "no progress after resume"; return 1; }
	expect_field sr hydration_active 1 || return
	# reload mid-hydration (started by a message): carries on
	reload sr || return
	expect_cmp "$RELOAD_HYDRATED" -lt "$TOTAL" "(test) regions hydrated at the reload" || return
	expect_field sr hydration_active 1 || return
	wait_status sr hydrated -ge $((RELOAD_HYDRATED + 16)) 30 ||
		{ fail "no progress after the reload"; return 1; }
	# a stopped device stays stopped across a reload
	expect_ok "hydration stop" cor_message sr hydration stop || return
	wait_status sr hydrating -eq 0 || return
	reload sr || return
	h=$(cor_status_field sr hydrated)
	ktap_diag "hydrated at the suspend/reload/second reload: $hs $RELOAD_HYDRATED $h of $TOTAL"
	expect_cmp "$h" -lt "$TOTAL" "(test) regions hydrated at the second reload" || return
	stays sr "hydrated hydrating hydration_active" "$h 0 0" 1000 || return
	tunables sr 8 8 || return
	expect_ok "hydration start" cor_message sr hydration start || return
	wait_done sr 90 || { fail "hydration did not finish"; return 1; }
	expect_eq "$(cor_status_fields sr hydrated dirty copies_failed mode)" "$TOTAL 0 0 rw" \
		"hydrated dirty copies_failed mode" || return
	expect_is_origin "destination" "$D_DEST" &&
	expect_is_origin "cor device" "$(dm_path sr)" || return
	cor_remove sr && dm_remove osr
}

########################################################################
# 8: origin errors

EBAD=200			# the region the error segment covers

# check_backoff SINCE: the log lines of the failed attempts on region EBAD
# of fe are 250, 500, 1000, 2000 ms apart at least (the retry delays).
# The delays run from jiffies, the log is stamped with the TSC. Only one
# vCPU moves jiffies on; when the host stalls that vCPU, the other reads
# a stale jiffies and the delay ends early by the stall (CI once stamped a
# 2000 ms wait 1987 ms: two 2-vCPU VMs shared two host cores). Hence 50 ms
# of slack: a backoff that did not double would miss by 500 ms or more.
check_backoff()
{
	local ts gaps msg

	ts=$(klog_new_since "$1" | grep "cor: $(dm_majmin fe): .*regions $EBAD-$EBAD failed" |
		sed -n 's/^\[ *\([0-9][0-9]*\.[0-9]*\)\].*/\1/p')
	if [ "$(wc -w <<<"$ts")" -ne 5 ]; then
		msg="backoff not timed: $(wc -w <<<"$ts") timestamped log lines of failed attempts"
		msg+=" (rate-limited?)"
		ktap_diag "$msg"
		return 0
	fi
	gaps=$(awk '
		NR > 1 { printf "%s%d", (NR > 2 ? " " : ""), ($1 - last) * 1000 + 0.5 }
		{ last = $1 }' <<<"$ts")
	ktap_diag "ms between the failed attempts: $gaps"
	awk -v g="$gaps" 'BEGIN {
		split(g, a, " "); want = 250
		for (i = 1; i <= 4; i++) { if (a[i] < want - 50) exit 1; want *= 2 }
	}' || fail "retries of a failed batch must wait 250, 500, 1000, 2000 ms; waited $gaps ms"
}

st_origin_errors()
{
	local dev e0 e1 k0 t1 t2 f out msg hb hn

	new_devs fe || return
	msg="cannot create the origin with an error segment"
	dm_create_lines eorigin "0 $((EBAD * REGION)) linear $ORIGIN 0
$((EBAD * REGION)) $REGION error
$(((EBAD + 1) * REGION)) $((N - (EBAD + 1) * REGION)) linear $ORIGIN $(((EBAD + 1) * REGION))" ||
		{ fail "$msg: $COR_LAST_OUTPUT"; return 1; }
	cor_create fe "$(dm_path eorigin)" "$D_DEST" "$D_META" "$REGION" ||
		{ fail "create: $COR_LAST_OUTPUT"; return 1; }
	dev=$(dm_path fe)
	e0=$(event_nr fe)
	k0=$(klog_count)
	expect_ok "hydration start" cor_message fe hydration start || return
	wait_status fe copies_failed -ge 1 30 || { fail "region $EBAD never failed"; return 1; }
	t1=$(now_ms)
	wait_status fe hydration_stopped_on_error -eq 1 20 ||
		{ fail "hydration did not stop on the error"; return 1; }
	t2=$(now_ms)
	ktap_diag "first failure seen to stop seen: $((t2 - t1)) ms (backoff 250+500+1000+2000 ms)"
	# 5 attempts, 4 backoffs in between: from the kernel log's timestamps
	check_backoff "$k0" || return
	msg="hydration_active stopped_on_error hydration_errors prefetch_queued hydrating mode"
	expect_eq "$(cor_status_fields fe hydration_active hydration_stopped_on_error \
		hydration_errors prefetch_queued hydrating mode)" "0 1 1 0 0 rw" "$msg" || return
	# default tunables: the batch holding region EBAD failed once, then
	# its regions were copied one by one, the bad one failing 5 times
	expect_eq "$(cor_status_fields fe copies_failed origin_read_errors)" \
		"$((DFLT_BATCH + 5)) 6" \
		"copies_failed origin_read_errors (a batch, then 5 attempts)" || return
	# every region before the bad one; after it, only what batches already
	# in flight when it first failed copied
	hb=$(cor_bitmap fe hydrated 0 "$TOTAL")
	case "$hb" in
	"0-$((EBAD - 1))" | "0-$((EBAD - 1)) $((EBAD + 1))-"*) ;;
	*) fail "hydrated bitmap: want 0-$((EBAD - 1)), then nothing or from $((EBAD + 1)); got $hb"
		return 1 ;;
	esac
	ktap_diag "hydrated when hydration gave up: $hb"
	hn=$(cor_status_field fe hydrated)
	e1=$(event_nr fe)
	expect_cmp "$e1" -gt "$e0" "dm event number after hydration stopped" || return
	if ! klog_has "$k0" fe "stop|gave up|giving up"; then
		ktap_diag "$(klog_new_since "$k0" | grep ': cor: ' | tail -n 5)"
		fail "no kernel log line saying that hydration stopped"
		return 1
	fi
	# no silent retry: nothing moves for longer than the next backoff
	stays fe "copies_failed hydrated hydration_active" "$((DFLT_BATCH + 5)) $hn 0" 4500 ||
		return
	# the device works: good regions read, the bad one fails
	out=$("$COR_PATTERN" verify "$dev" 0 $((EBAD * BPR)) "$SEED" --quiet 2>&1) ||
		{ fail "regions before the bad one: $out"; return 1; }
	out=$("$COR_PATTERN" verify "$dev" $(((EBAD + 1) * BPR)) $((4 * BPR)) "$SEED" \
		--quiet 2>&1) ||
		{ fail "regions after the bad one: $out"; return 1; }
	expect_io_error "read of region $EBAD" \
		dd_read "$dev" $((EBAD * REGION)) 8 "$COR_TMP/r" || return
	wait_status fe hydrating -eq 0 || return

	# a prefetch clears stopped_on_error and tries again; it gives up the
	# same way (without starting background hydration)
	e0=$(event_nr fe)
	k0=$(klog_count)
	f=$(cor_status_field fe copies_failed)
	expect_ok "prefetch of region $EBAD" \
		cor_message fe prefetch $((EBAD * REGION)) "$REGION" || return
	expect_eq "$(cor_status_fields fe hydration_stopped_on_error hydration_active)" "0 0" \
		"stopped_on_error hydration_active after the prefetch" || return
	wait_status fe hydration_stopped_on_error -eq 1 20 ||
		{ fail "prefetch of the bad region did not give up"; return 1; }
	msg="hydration_active hydration_errors prefetch_queued copies_failed"
	msg+=" after the prefetch gave up"
	expect_eq "$(cor_status_fields fe hydration_active hydration_errors prefetch_queued \
		copies_failed)" "0 2 0 $((f + 5))" "$msg" || return
	expect_cmp "$(event_nr fe)" -gt "$e0" "dm event number after the prefetch gave up" || return
	if ! klog_has "$k0" fe "stop|gave up|giving up"; then
		ktap_diag "$(klog_new_since "$k0" | grep ': cor: ' | tail -n 5)"
		fail "no kernel log line saying that the prefetch gave up"
	fi

	# repaired origin: "hydration start" completes
	dm_reload eorigin "0 $N linear $ORIGIN 0" || return
	f=$(cor_status_field fe copies_failed)
	expect_ok "hydration start" cor_message fe hydration start || return
	expect_field fe hydration_stopped_on_error 0 || return
	wait_done fe 60 || { fail "hydration did not finish after the repair"; return 1; }
	expect_eq "$(cor_status_fields fe hydrated hydration_stopped_on_error hydration_errors \
		copies_failed mode)" "$TOTAL 0 2 $f rw" \
		"hydrated stopped_on_error hydration_errors copies_failed mode" || return
	expect_is_origin "destination" "$D_DEST" &&
	expect_is_origin "cor device" "$dev" || return
	cor_remove fe
}

# COR_HYD_ONLY="3 5" runs only those subtests (the others are skipped)
hyd_subtest()
{
	local n=$1

	shift
	if [ -n "$COR_HYD_ONLY" ] && ! [[ " $COR_HYD_ONLY " == *" $n "* ]]; then
		ktap_skip "$1" "not in COR_HYD_ONLY"
		return
	fi
	run_subtest "$@"
}

msg="background_hydration: each region copied once, dmsetup wait returns at completion,"
msg+=" destination == origin"
hyd_subtest 1 "$msg" st_background
hyd_subtest 2 "completion is committed before its event" st_completion_committed
msg="hydration stop/start, threshold and batch size: regions in flight, origin I/O size,"
msg+=" yield to user I/O, bad values"
hyd_subtest 3 "$msg" st_start_stop
msg="prefetch: exactly the covering regions, in queue order, before the scan;"
msg+=" bad ranges"
hyd_subtest 4 "$msg" st_prefetch
msg="prefetch: at most 1024 ranges queued, EBUSY beyond;"
msg+=" a region queued twice copied once"
hyd_subtest 5 "$msg" st_prefetch_limit
hyd_subtest 6 "fio randrw with crc32c verify during hydration loses nothing" st_fio
hyd_subtest 7 "suspend/resume and reload mid-hydration: hydration continues, data correct" \
	st_suspend_reload
msg="origin errors: backoff, stop after 5 attempts, event, log; prefetch retries;"
msg+=" repair and complete"
hyd_subtest 8 "$msg" st_origin_errors

cor_test_done
