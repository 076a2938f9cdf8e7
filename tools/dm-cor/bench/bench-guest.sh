#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# dm-cor benchmarks, run inside one VM session (scripts/bench.sh boots it).
# Every figure is a ratio against a baseline measured in the same VM on the
# same devices, so TCG's slowness cancels out:
#
#  1. fully hydrated 4 KiB random reads, iodepth 32: cor vs dm-linear over
#     the same destination (target: >= 0.97);
#  2. median cold-read latency, origin behind dm-delay (2 ms reads): cor vs
#     reading the delayed origin directly (target: <= 1.10).
#
# Uses /dev/vda (origin), /dev/vdb (destination), /dev/vdc (metadata).
set -euo pipefail
export DM_DISABLE_UDEV=1

SIZE_MB=${BENCH_SIZE_MB:-256}
RUNTIME=${BENCH_RUNTIME:-8}
ROUNDS=${BENCH_ROUNDS:-5}
sectors=$((SIZE_MB * 2048))

cleanup() {
	for d in bench-cor bench-lin bench-delay bench-origin bench-dest bench-meta; do
		dmsetup remove "$d" 2>/dev/null || true
	done
}
trap cleanup EXIT

zero_meta() { dd if=/dev/zero of=/dev/mapper/bench-meta bs=1M count=8 oflag=direct status=none; }

field() {	# field <status line> <n>: nth word of a status line
	echo "$1" | awk -v n="$2" '{ print $n }'
}

wait_hydrated() {
	local deadline=$((SECONDS + 300)) st
	while :; do
		st=$(dmsetup status bench-cor)
		[ "$(field "$st" 7 | cut -d/ -f1)" = "$(field "$st" 7 | cut -d/ -f2)" ] && return 0
		[ $SECONDS -lt $deadline ] || { echo "not hydrated: $st" >&2; return 1; }
		sleep 0.2
	done
}

fio_iops() {	# fio_iops DEV: 4 KiB random-read IOPS at iodepth 32
	fio --name=randread --filename="$1" --rw=randread --bs=4k --direct=1 \
	    --ioengine=libaio --iodepth=32 --runtime="$RUNTIME" --time_based \
	    --size="${SIZE_MB}M" --randrepeat=1 --minimal | awk -F';' '{ print $8 }'
}

fio_median_lat() {	# fio_median_lat DEV NR: median completion latency (usec), qd 1
	fio --name=coldread --filename="$1" --rw=randread --bs=4k --direct=1 \
	    --ioengine=psync --number_ios="$2" --size="${SIZE_MB}M" --randrepeat=1 \
	    --percentile_list=50 --minimal |
		awk -F';' '{ for (i = 1; i <= NF; i++) if ($i ~ /^50\.0+%=/) { split($i, a, "="); print a[2]; exit } }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

modprobe dm-cor
modprobe dm-delay

dmsetup create bench-origin --table "0 $sectors linear /dev/vda 0"
dmsetup create bench-dest --table "0 $sectors linear /dev/vdb 0"
dmsetup create bench-meta --table "0 65536 linear /dev/vdc 0"
dd if=/dev/urandom of=/dev/mapper/bench-origin bs=1M count="$SIZE_MB" oflag=direct status=none

echo "# 1. hydrated 4 KiB random read, iodepth 32, ${RUNTIME}s x $ROUNDS rounds"
zero_meta
dmsetup create bench-cor --table "0 $sectors cor /dev/mapper/bench-origin /dev/mapper/bench-dest /dev/mapper/bench-meta 128"
dd if=/dev/mapper/bench-cor of=/dev/null bs=1M iflag=direct status=none
wait_hydrated
dmsetup create bench-lin --table "0 $sectors linear /dev/mapper/bench-dest 0"
# a warm-up run of each (not counted), then pairs in alternating order, so
# that drift favours neither; the figure is the median of the pairs' ratios
fio_iops /dev/mapper/bench-lin >/dev/null
fio_iops /dev/mapper/bench-cor >/dev/null
lin=() cor=() ratios=()
for round in $(seq "$ROUNDS"); do
	if ((round % 2)); then
		l=$(fio_iops /dev/mapper/bench-lin)
		c=$(fio_iops /dev/mapper/bench-cor)
	else
		c=$(fio_iops /dev/mapper/bench-cor)
		l=$(fio_iops /dev/mapper/bench-lin)
	fi
	lin+=("$l") cor+=("$c")
	ratios+=("$(awk -v c="$c" -v l="$l" 'BEGIN { printf "%.3f", c / l }')")
done
echo "linear IOPS: ${lin[*]} (median $(printf '%s\n' "${lin[@]}" | median))"
echo "cor    IOPS: ${cor[*]} (median $(printf '%s\n' "${cor[@]}" | median))"
echo "ratios of the pairs: ${ratios[*]}"
echo "RESULT hydrated_randread_iops_ratio $(printf '%s\n' "${ratios[@]}" | median) (target >= 0.97; median of $ROUNDS pairs)"
dmsetup remove bench-lin bench-cor

echo "# 2. cold 4 KiB reads, origin behind dm-delay (2 ms reads), qd 1"
dmsetup create bench-delay --table "0 $sectors delay /dev/mapper/bench-origin 0 2 /dev/mapper/bench-origin 0 0"
zero_meta
dmsetup create bench-cor --table "0 $sectors cor /dev/mapper/bench-delay /dev/mapper/bench-dest /dev/mapper/bench-meta 8"
nr=${BENCH_COLD_IOS:-400}
direct=$(fio_median_lat /dev/mapper/bench-delay "$nr")
cold=$(fio_median_lat /dev/mapper/bench-cor "$nr")
st=$(dmsetup status bench-cor)
echo "delayed origin median: ${direct} us; cor cold-read median: ${cold} us"
echo "cor status after the run: $st"
echo "RESULT cold_read_latency_ratio $(awk -v c="$cold" -v d="$direct" 'BEGIN { printf "%.3f", c / d }') (target <= 1.10)"
