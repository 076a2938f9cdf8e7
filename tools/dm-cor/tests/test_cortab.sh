#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_cortab.sh: on the host (no VM, no root, no dm device), what of
# corctl's setup commands and of dm-cor-generator needs no kernel:
# metadata-size against the format's layout, the command lines of create,
# activate and deactivate, every kind of bad cortab line (reported with
# its line number, nothing done), and the units the generator writes for
# a sample cortab, checked with systemd-analyze verify where it runs.
# The commands against real devices are in
# tools/testing/selftests/dm-cor/test_cortab.sh (in the VM).
# COR_TOOLS_DIR=DIR tests the binaries in DIR (default: this source tree's).
# Output is KTAP; the exit status is 0 only if every subtest passed.

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${COR_TOOLS_DIR:-$(dirname "$HERE")}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cor-cortab-test.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT

echo "KTAP version 1"
echo "1..$(grep -c '^run "' "$0")"
for b in corctl dm-cor-generator; do
	[ -x "$BIN/$b" ] || { echo "Bail out! $BIN/$b is not built (make -C tools/dm-cor)"; exit 1; }
done

# KTAP subtests: run, fail, skip, diag
# shellcheck source=tools/dm-cor/tests/lib_ktap.sh
. "$HERE/lib_ktap.sh"

# t RC PATTERN ARGS...: corctl ARGS must exit RC and print (stdout and
# stderr, kept in $OUT) something matching the extended regex PATTERN
t()
{
	local want=$1 pat=$2 rc

	shift 2
	OUT=$("$BIN/corctl" "$@" 2>&1)
	rc=$?
	if [ $rc -ge 126 ]; then
		fail "corctl $*: crashed (exit $rc): $OUT"
		return 1
	fi
	if [ $rc -ne "$want" ]; then
		fail "corctl $*: exit $rc, expected $want: $OUT"
		return 1
	fi
	if [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$OUT"; then
		fail "corctl $*: output does not match '$pat': $OUT"
		return 1
	fi
	return 0
}

########################################################################

# The layout of drivers/md/dm-cor-format.h: two superblocks, then two
# areas of a hydrated and a dirty bitmap, 32640 regions a 4 KiB block
expected_sectors()	# LENGTH REGION (sectors)
{
	local nr=$((($1 + $2 - 1) / $2))

	echo $(((2 + 4 * ((nr + 32639) / 32640)) * 8))
}

st_metadata_size()
{
	local len region got want

	for len in 8 1000 2097152 4294967296 35184372088832; do
		for region in 8 128 2097152; do
			t 0 '' metadata-size --size "$len" --region-size "$region" -n || return
			got=$OUT
			want=$(expected_sectors "$len" "$region")
			[ "$got" = "$want" ] ||
				fail "size $len, region $region: $got sectors, the layout needs $want"
		done
	done
	t 0 '^16496 sectors \(8\.1 MiB\) of metadata for 16777216 regions of 128 sectors$' \
		metadata-size --size 1T --region-size 64k || return
	t 0 '^8248$' metadata-size -s 1T -r 64k -u k -n || return
	# rounded up to whole units
	t 0 '^1$' metadata-size -s 1G -r 64k -u m -n || return
	t 2 'needed' metadata-size --size 1G || return
	t 2 'not a size' metadata-size --size 1G --region-size 1000b || return
	t 2 'power of two' metadata-size --size 1G --region-size 96k || return
	t 2 'not s, b, k, m or g' metadata-size -s 1G -r 64k -u t || return
	t 2 'too many' metadata-size -s 1G -r 64k extra || return
	t 2 'not a size' metadata-size -s 0 -r 64k || return
}

st_create_args()
{
	t 2 'NAME ORIGIN DEST METADATA are needed' create || return
	t 2 'NAME ORIGIN DEST METADATA are needed' create a /dev/a /dev/b || return
	t 2 'too many' create a /dev/a /dev/b /dev/c /dev/d || return
	t 2 'power of two, 4k to 1g' create -r 96k a /dev/a /dev/b /dev/c || return
	t 2 'power of two, 4k to 1g' create -r 2g a /dev/a /dev/b /dev/c || return
	t 2 'not a size' create --length 1000b a /dev/a /dev/b /dev/c || return
	t 2 'not a count' create --hydration-threshold 0 a /dev/a /dev/b /dev/c || return
	t 2 'not a count' create --hydration-batch-size x a /dev/a /dev/b /dev/c || return
	t 2 "name 'a/b'" create a/b /dev/a /dev/b /dev/c || return
	t 2 "name 'control'" create control /dev/a /dev/b /dev/c || return
	t 2 'cannot be formatted' create --read-only --format a /dev/a /dev/b - || return
	t 2 '' create --no-such-option a /dev/a /dev/b /dev/c || return
	t 0 'usage: corctl create' create --help || return
	t 0 'usage: corctl activate' activate --help || return
	t 0 'usage: corctl deactivate' deactivate --help || return
	t 0 'usage: corctl metadata-size' metadata-size --help || return
	t 2 '' activate --bogus || return
}

# Each bad line alone: activate and deactivate refuse with its line number,
# before they touch any device (there is none here)
st_bad_lines()
{
	local line why f=$TMP/bad.cortab

	while IFS='|' read -r line why; do
		printf '# a comment\n\n%s\n' "$line" >"$f"
		t 1 "$f:3: .*$why" activate --cortab "$f" || return
		grep -q 'nothing done' <<<"$OUT" || fail "'$line': no 'nothing done': $OUT"
		grep -qiE 'device-mapper|mapper/control' <<<"$OUT" &&
			fail "'$line': activate went on to device-mapper: $OUT"
		t 1 "$f:3: .*$why" deactivate --cortab "$f" || return
	done <<'LINES'
a|only NAME of
a /dev/o|only NAME ORIGIN of
a /dev/o /dev/d|only NAME ORIGIN DESTINATION of
a /dev/o /dev/d /dev/m opts extra|too many fields
a UUID=0a1b /dev/d /dev/m|tags such as UUID= and LABEL= are refused
a /dev/o LABEL=x /dev/m|tags such as UUID=
a dev/o /dev/d /dev/m|not an absolute path
a /dev/o /dev/d /dev/m bogus|unknown option 'bogus'
a /dev/o /dev/d /dev/m hydrate,,format|empty option
a /dev/o /dev/d /dev/m hydrate,|empty option
a /dev/o /dev/d /dev/m region-size=96k|region-size '96k' is not a power of two
a /dev/o /dev/d /dev/m region-size|region-size '' is not
a /dev/o /dev/d /dev/m hydrate=1|option 'hydrate' takes no value
a /dev/o /dev/d /dev/m hydration-threshold=0|needs a count
a /dev/o /dev/d -|volatile metadata .* needs the read-only option
a /dev/o /dev/d - read-only,format|cannot be formatted
a /dev/o /dev/o /dev/m|three devices
bad/name /dev/o /dev/d /dev/m|name 'bad/name'
-a /dev/o /dev/d /dev/m|name '-a'
LINES
	# two lines with one name, or one destination
	printf 'a /dev/o /dev/d /dev/m\na /dev/p /dev/e /dev/n\n' >"$f"
	t 1 "$f:2: name 'a' is used twice" activate --cortab "$f" || return
	grep -q "$f:1: name 'a' is used twice" <<<"$OUT" || fail "line 1 not reported: $OUT"
	printf 'a /dev/o /dev/d /dev/m\nb /dev/p /dev/d /dev/n\n' >"$f"
	t 1 "$f:2: shares a destination" activate --cortab "$f" || return
	# a long line
	printf 'a /dev/o /dev/d /dev/m %s\n' "$(printf 'x%.0s' {1..5000})" >"$f"
	t 1 "$f:1: longer than 4096" activate --cortab "$f" || return
	# a name that is not there, and a bad named line
	printf 'a /dev/o /dev/d /dev/m\nb /dev/p /dev/e bogus\n' >"$f"
	t 1 "has no line for 'c'" activate --cortab "$f" c || return
	t 1 "the line of 'b' .*:2\) is bad: nothing done" activate --cortab "$f" b || return
	t 1 "has no line for 'c'" deactivate --cortab "$f" c || return
	t 1 "$TMP/none: No such file" activate --cortab "$TMP/none" || return
	# x- options belong to other programs; - is no option
	printf 'a /dev/o /dev/d /dev/m x-systemd.device-timeout=10\nb /dev/p /dev/e /dev/n -\n' >"$f"
	t 1 "has no line for 'c'" activate --cortab "$f" c || return
	grep -q ':1:\|:2:' <<<"$OUT" && fail "valid lines reported as bad: $OUT"
	return 0
}

# gen CORTAB: run the generator into $TMP/units (fresh); output in $GOUT
gen()
{
	rm -rf "$TMP/units"
	mkdir -p "$TMP/units"
	GOUT=$(CORTAB=$1 CORCTL=/usr/sbin/corctl "$BIN/dm-cor-generator" "$TMP/units" \
		"$TMP/early" "$TMP/late" 2>&1)
	GRC=$?
}

# has UNIT LINE...: the unit file has each line, exactly
has()
{
	local u=$TMP/units/$1 l

	shift
	[ -f "$u" ] || { fail "no unit $u"; return 1; }
	for l in "$@"; do
		grep -qxF -- "$l" "$u" || fail "$(basename "$u"): no line '$l'"
	done
}

st_generator()
{
	local f=$TMP/gen.cortab u

	cat >"$f" <<'CORTAB'
# local, formatted at first boot
vm-1  /dev/disk/by-id/virtio-origin-1  /dev/vdc  /dev/vdd  region-size=64k,hydrate,format
	# network origin, may fail
net   /dev/nbd0  /dev/vg0/net  /dev/vg0/net-meta  _netdev,nofail
ro    /dev/vde   /dev/vdf  -  read-only,noauto
root  /dev/vdg   /dev/vdh  /dev/vdi  initramfs
bad   UUID=1234  /dev/vdj  /dev/vdk
CORTAB
	gen "$f"
	[ "$GRC" -eq 0 ] || fail "generator exit $GRC: $GOUT"
	grep -q "$f:7: origin 'UUID=1234'.*line skipped" <<<"$GOUT" ||
		fail "the bad line is not reported: $GOUT"
	[ "$(grep -c . <<<"$GOUT")" -eq 1 ] || fail "more than the bad line reported: $GOUT"
	has 'dm-cor@vm-1.service' \
		"# Automatically generated by dm-cor-generator from $f, line 2" \
		'DefaultDependencies=no' \
		'BindsTo=dev-disk-by\x2did-virtio\x2dorigin\x2d1.device' \
		'After=dev-disk-by\x2did-virtio\x2dorigin\x2d1.device' \
		'BindsTo=dev-vdc.device' 'BindsTo=dev-vdd.device' \
		'Before=local-fs-pre.target' \
		'Wants=blockdev@dev-mapper-vm\x2d1.target' \
		'Before=blockdev@dev-mapper-vm\x2d1.target' \
		'Type=oneshot' 'RemainAfterExit=yes' \
		"ExecStart=/usr/sbin/corctl activate --cortab $f vm-1" \
		"ExecStop=/usr/sbin/corctl deactivate --cortab $f vm-1"
	has 'dm-cor@net.service' 'Wants=network-online.target' \
		'After=network-online.target' 'Before=remote-fs-pre.target' \
		'BindsTo=dev-vg0-net\x2dmeta.device'
	has 'dm-cor@ro.service' 'BindsTo=dev-vde.device' 'BindsTo=dev-vdf.device'
	grep -q 'BindsTo=-' "$TMP/units/dm-cor@ro.service" &&
		fail "volatile metadata made a device dependency"
	has 'dm-cor@root.service' "ExecStart=/usr/sbin/corctl activate --cortab $f root"
	grep -q '^ExecStop=' "$TMP/units/dm-cor@root.service" &&
		fail "an initramfs line (maybe the root filesystem) is stopped at shutdown"
	[ -e "$TMP/units/dm-cor@bad.service" ] && fail "a unit for the bad line"
	# what pulls them in
	[ "$(readlink "$TMP/units/local-fs.target.requires/dm-cor@vm-1.service")" = \
	  "../dm-cor@vm-1.service" ] || fail "vm-1 is not required by local-fs.target"
	[ -L "$TMP/units/remote-fs.target.wants/dm-cor@net.service" ] ||
		fail "net (_netdev,nofail) is not wanted by remote-fs.target"
	[ -L "$TMP/units/remote-fs.target.requires/dm-cor@net.service" ] &&
		fail "net (nofail) is required"
	find "$TMP/units" -name 'dm-cor@ro.service' -path '*.target.*' | grep -q . &&
		fail "ro (noauto) is pulled in by a target"
	u=$(find "$TMP/units" -type l | wc -l)
	[ "$u" -eq 3 ] || fail "$u symlinks, expected 3 (vm-1, net, root)"

	# no cortab: no unit; wrong arguments: exit 2
	gen "$TMP/none"
	[ "$GRC" -eq 0 ] && [ -z "$(ls -A "$TMP/units")" ] ||
		fail "without a cortab: exit $GRC, units $(ls -A "$TMP/units"): $GOUT"
	if "$BIN/dm-cor-generator" >/dev/null 2>&1; then
		fail "the generator ran without a directory"
	fi
	return 0
}

st_systemd_verify()
{
	local f=$TMP/verify.cortab out rc

	command -v systemd-analyze >/dev/null || { skip "no systemd-analyze"; return; }
	printf 'vm-1 /dev/disk/by-id/virtio-o /dev/vdc /dev/vdd hydrate\nnet /dev/nbd0 /dev/vde /dev/vdf _netdev,nofail\n' >"$f"
	rm -rf "$TMP/units"
	mkdir -p "$TMP/units"
	CORTAB=$f CORCTL=$BIN/corctl "$BIN/dm-cor-generator" "$TMP/units" || {
		fail "generator failed"
		return
	}
	out=$(cd "$TMP/units" && timeout 120 systemd-analyze verify --man=no \
		./dm-cor@vm-1.service ./dm-cor@net.service 2>&1)
	rc=$?
	# complaints about the generated units fail; a systemd-analyze that
	# cannot run in this environment at all skips
	if grep -q 'dm-cor@' <<<"$out"; then
		fail "systemd-analyze verify (exit $rc): $out"
	elif [ $rc -ne 0 ] || [ -n "$out" ]; then
		skip "systemd-analyze verify cannot run here (exit $rc): $(head -n 1 <<<"$out")"
	fi
}

run "metadata-size: the format's layout, units, bad arguments" st_metadata_size
run "create, activate, deactivate, metadata-size: bad arguments" st_create_args
run "cortab: every bad line reported with its number, nothing done" st_bad_lines
run "generator: units, ordering, escaping, bad line skipped" st_generator
run "generator: systemd-analyze verify" st_systemd_verify

echo "# Totals: pass:$((CNT - NFAIL - NSKIP)) fail:$NFAIL skip:$NSKIP"
[ $NFAIL -eq 0 ]
