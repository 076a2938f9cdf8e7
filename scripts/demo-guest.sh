#!/bin/bash
# dm-cor demo, run inside the test VM by scripts/demo.sh (via vm-run.sh):
#   scripts/vm-run.sh --kernel 6.12 --module build/<kver>/dm-cor.ko -- \
#       bash /dm-cor/scripts/demo-guest.sh
# Builds a slow origin (dm-delay, 20 ms per read) over /dev/vda stamped with
# known data, puts a cor device in front of it with a destination on
# /dev/vdb and metadata on /dev/vdc, and shows copy-on-read at work: the
# first read goes to the origin, the second does not, data stays identical,
# writes land on the destination, background hydration finishes the job and
# the origin is detached by reloading the table as linear.
# Destroys the contents of /dev/vda, /dev/vdb and /dev/vdc.
set -euo pipefail
export DM_DISABLE_UDEV=1 LC_ALL=C

ORIGIN_DISK=${DEMO_ORIGIN_DISK:-/dev/vda}
DEST_DISK=${DEMO_DEST_DISK:-/dev/vdb}
META_DISK=${DEMO_META_DISK:-/dev/vdc}
DELAY_MS=20
REGION=128                    # sectors per region (64 KiB)
SIZE_MB=64                    # cor device size
N=$((SIZE_MB * 2048))         # sectors
NR_REGIONS=$((N / REGION))
META_SECTORS=32768            # 16 MiB metadata slice
READ_MB=16                    # working set read twice
READ_REGIONS=$((READ_MB * 2048 / REGION))
WRITE_REGION=600              # a region the first reads do not touch
WRITE_OFF=$((WRITE_REGION * REGION + 8)) # sector, inside the region
WORK=$(mktemp -d)

T0=$(date +%s%N)
step() {
	local cs=$((($(date +%s%N) - T0) / 10000000))
	printf '\n[%3d.%02ds] ==> %s\n' $((cs / 100)) $((cs % 100)) "$*"
}
say() { echo "    $*"; }
run() { # show the command (quoting words with spaces), run it, indent output
	local a line='    #'
	for a in "$@"; do
		[[ $a == *[[:space:]]* ]] && a="\"$a\""
		line+=" $a"
	done
	echo "$line"
	"$@" 2>&1 | sed 's/^/    /'
}
die() { echo "demo: FAILED: $*" >&2; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# sum_of FILE|DEV [MiB]: md5 (3x faster than sha256 under TCG) of a file or
# of a device read with O_DIRECT. Data goes through a tmpfs file, not a
# pipe: pipes are slow in a TCG guest.
sum_of() {
	local src=$1 tmp=$WORK/sum.tmp sum
	local -a flags=()
	[[ -b $src ]] && flags=(iflag=direct)
	if [[ -b $src || -n ${2:-} ]]; then
		dd if="$src" of="$tmp" bs=1M ${2:+count=$2} "${flags[@]}" status=none
		src=$tmp
	fi
	sum=$(md5sum <"$src")
	rm -f "$tmp"
	echo "${sum%% *}"
}

# sectors read from a dm device, from /sys/block/dm-N/stat (3rd field)
sectors_read() {
	local minor
	minor=$(dmsetup info -c --noheadings -o minor "$1" | tr -d ' ')
	awk '{ print $3 }' "/sys/block/dm-$minor/stat"
}

# status field K (1-based, after "<start> <len> cor") of the cor device
status_field() { dmsetup status cor | awk -v k="$1" '{ print $(k + 3) }'; }

# wait_hydrated MIN SECS: poll until >= MIN regions are hydrated and no copy
# is in flight; fail after SECS seconds.
wait_hydrated() {
	local min=$1 deadline=$(($(date +%s) + $2)) h
	while :; do
		h=$(status_field 4)
		((${h%/*} >= min && $(status_field 5) == 0)) && return 0
		(($(date +%s) < deadline)) || die "only $h regions hydrated after $2 s (wanted $min)"
		sleep 0.1
	done
}

cleanup() {
	local d
	for d in cor cor_origin cor_dest cor_meta; do
		dmsetup info "$d" >/dev/null 2>&1 && dmsetup remove --retry "$d" >/dev/null 2>&1
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

for d in "$ORIGIN_DISK" "$DEST_DISK" "$META_DISK"; do
	[[ -b $d ]] || die "$d is not a block device (run this inside scripts/vm-run.sh)"
done

step "Loading modules"
run modprobe dm-delay
if ! modprobe dm-cor; then
	die "modprobe dm-cor failed: boot the VM with --module build/\$(uname -r)/dm-cor.ko"
fi
run dmsetup targets

step "Stamping the origin with ${SIZE_MB} MiB of pseudo-random data (fio, seed 42)"
fio --name=stamp --filename="$ORIGIN_DISK" --rw=write --bs=1M --size="${SIZE_MB}M" \
	--direct=1 --ioengine=psync --refill_buffers --randseed=42 >/dev/null ||
	die "fio could not stamp $ORIGIN_DISK"
dd if="$ORIGIN_DISK" of="$WORK/origin.img" bs=1M count="$SIZE_MB" iflag=direct status=none
ORIGIN_SUM=$(sum_of "$WORK/origin.img")
say "origin md5: $ORIGIN_SUM (a copy is kept in $WORK/origin.img)"

step "Slow origin: dm-delay adding ${DELAY_MS} ms to every read (read-only table)"
run dmsetup create --readonly cor_origin --table "0 $N delay $ORIGIN_DISK 0 $DELAY_MS"
say "destination: first ${SIZE_MB} MiB of $DEST_DISK; metadata: 16 MiB of $META_DISK, zeroed"
dmsetup create cor_dest --table "0 $N linear $DEST_DISK 0"
dmsetup create cor_meta --table "0 $META_SECTORS linear $META_DISK 0"
dd if=/dev/zero of=/dev/mapper/cor_meta bs=1M count=$((META_SECTORS / 2048)) oflag=direct status=none

step "Creating the cor device ($NR_REGIONS regions of $REGION sectors)"
TABLE="0 $N cor /dev/mapper/cor_origin /dev/mapper/cor_dest /dev/mapper/cor_meta $REGION"
run dmsetup create cor --table "$TABLE"
run dmsetup table cor
run dmsetup status cor
say "status: <md block size> <used/total md blocks> <region size> <hydrated/total> <hydrating> <dirty> <mode> ..."

step "First read of ${READ_MB} MiB (64 KiB direct reads): served by the slow origin"
s0=$(sectors_read cor_origin)
t=$(now_ms)
dd if=/dev/mapper/cor of="$WORK/read1" bs=64K count=$((READ_MB * 16)) iflag=direct status=none
t1=$(($(now_ms) - t))
o1=$(($(sectors_read cor_origin) - s0))
say "took ${t1} ms; origin sectors read: $o1 for $((READ_MB * 2048)) sectors requested"
say "(anything above that is the copies to the destination re-reading the origin)"
cmp -n $((READ_MB << 20)) "$WORK/read1" "$WORK/origin.img" ||
	die "first read differs from the origin"
say "data identical to the origin"

step "Copy-on-read runs in the background; waiting for $READ_REGIONS regions to be CLEAN"
wait_hydrated "$READ_REGIONS" 30
run dmsetup status cor
say "hydrated regions (bitmap hydrated 0 $NR_REGIONS):"
run dmsetup message cor 0 bitmap hydrated 0 "$NR_REGIONS"

step "Second read of the same ${READ_MB} MiB: served by the destination"
s0=$(sectors_read cor_origin)
t=$(now_ms)
dd if=/dev/mapper/cor of="$WORK/read2" bs=64K count=$((READ_MB * 16)) iflag=direct status=none
t2=$(($(now_ms) - t))
o2=$(($(sectors_read cor_origin) - s0))
say "took ${t2} ms (first read: ${t1} ms); origin sectors read: $o2"
((o2 == 0)) || die "second read still read $o2 sectors from the origin"
say "md5 origin (first ${READ_MB} MiB): $(sum_of "$WORK/origin.img" "$READ_MB")"
say "md5 first read               : $(sum_of "$WORK/read1")"
say "md5 second read              : $(sum_of "$WORK/read2")"
cmp "$WORK/read1" "$WORK/read2" || die "second read differs from the first"

step "Writing 4 KiB into unhydrated region $WRITE_REGION (sector $WRITE_OFF), reading it back"
head -c 4096 /dev/zero | tr '\0' '\253' >"$WORK/patch"
dd if="$WORK/patch" of=/dev/mapper/cor bs=512 seek="$WRITE_OFF" oflag=direct status=none
cp "$WORK/origin.img" "$WORK/expected.img"
dd if="$WORK/patch" of="$WORK/expected.img" bs=512 seek="$WRITE_OFF" conv=notrunc status=none
dd if=/dev/mapper/cor of="$WORK/region" bs=512 skip=$((WRITE_REGION * REGION)) count="$REGION" \
	iflag=direct status=none
cmp "$WORK/region" <(dd if="$WORK/expected.img" bs=512 skip=$((WRITE_REGION * REGION)) \
	count="$REGION" status=none) || die "region $WRITE_REGION does not read back as written"
say "read back OK: the 4 KiB written, the rest of the 64 KiB region from the origin"
say "dirty regions (bitmap dirty 0 $NR_REGIONS):"
run dmsetup message cor 0 bitmap dirty 0 "$NR_REGIONS"
run dmsetup status cor

step "Hydrating the remaining regions"
if dmsetup message cor 0 hydration start 2>/dev/null; then
	say "# dmsetup message cor 0 hydration start"
else
	say "(the 'hydration start' message is refused by this build: hydrating by"
	say " reading every region through cor with 1 MiB direct reads instead)"
	dd if=/dev/mapper/cor of=/dev/null bs=1M iflag=direct status=none
fi
wait_hydrated "$NR_REGIONS" 60
run dmsetup status cor
run dmsetup message cor 0 bitmap hydrated 0 "$NR_REGIONS"

step "Whole device through cor == origin + our write"
COR_SUM=$(sum_of /dev/mapper/cor)
EXP_SUM=$(sum_of "$WORK/expected.img")
say "cor      : $COR_SUM"
say "expected : $EXP_SUM"
[[ $COR_SUM == "$EXP_SUM" ]] || die "cor device content differs from the expected image"

step "Detaching the origin: reload as linear over the destination"
run dmsetup suspend cor
run dmsetup reload cor --table "0 $N linear /dev/mapper/cor_dest 0"
run dmsetup resume cor
run dmsetup table cor
LIN_SUM=$(sum_of /dev/mapper/cor)
say "linear   : $LIN_SUM"
[[ $LIN_SUM == "$EXP_SUM" ]] || die "destination alone differs from the expected image"

step "The origin was never written"
NOW_SUM=$(sum_of "$ORIGIN_DISK" "$SIZE_MB")
say "origin md5 at start: $ORIGIN_SUM"
say "origin md5 now     : $NOW_SUM"
[[ $NOW_SUM == "$ORIGIN_SUM" ]] || die "the origin changed"

step "Teardown"
run dmsetup remove cor
run dmsetup remove cor_origin cor_dest cor_meta
run modprobe -r dm-cor
run dmsetup ls
trap - EXIT
rm -rf "$WORK"
step "Demo complete: first read ${t1} ms with $o1 origin sectors, second read ${t2} ms with $o2"
