#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Turn the project into a git-am-able patch series against Debian's
# linux-source-6.12 tree:
#
#   0000 cover letter
#   0001 block: add REQ_WRITE_UNCHANGED
#   0002 dm kcopyd: add DM_KCOPYD_WRITE_UNCHANGED
#   0003 dm raid1: keep REQ_WRITE_UNCHANGED on mirrored writes
#   0004 dm cor: add the copy-on-read target
#   0005 selftests: dm-cor: add the dm-cor tests
#
# The patches are made in a small git repository holding only the files
# they touch, copied from the pristine tree, so their index lines match
# the real tree.  In the tree dm-cor needs no compat layer: the compat
# header is reduced with unifdef to what 6.12 plus this series provides.
#
# usage: scripts/make-series.sh [OUTDIR]     (default build/series)
#        scripts/make-series.sh --check [OUTDIR]
#            also run checkpatch --strict on every patch (0 errors,
#            0 warnings, 0 checks required)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
check=0
if [ "${1:-}" = --check ]; then
	check=1
	shift
fi
out=$(realpath -m "${1:-$top/build/series}")
tarball=/usr/src/linux-source-6.12.tar.xz
[ -f "$tarball" ] || { echo "make-series: $tarball is missing (apt-get install linux-source-6.12)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
work=$tmp/tree		# the repository; messages live beside it in $tmp
mkdir "$work"

command -v unifdef >/dev/null || { echo "make-series: unifdef is missing (apt-get install unifdef)" >&2; exit 1; }

files=(include/linux/blk_types.h include/linux/dm-kcopyd.h drivers/md/dm-kcopyd.c
       drivers/md/dm-raid1.c drivers/md/Kconfig drivers/md/Makefile
       Documentation/admin-guide/device-mapper/index.rst MAINTAINERS
       tools/testing/selftests/Makefile)

cd "$work"
git init -q .
git config user.name "dm-cor developers"
git config user.email "dm-cor@example.org"
# only the files the series touches, straight from Debian's source tarball
tar -xJf "$tarball" --strip-components=1 "${files[@]/#/linux-source-6.12/}"
git add -A
git commit -q -m "base: Debian linux-source-6.12 (files the series touches)"
base=$(git rev-parse HEAD)

# commit SUBJECT BODY-FILE: commit everything with a signed-off message
commit() {
	git add -A
	{ echo "$1"; echo; cat "$2"; echo; echo "Signed-off-by: dm-cor developers <dm-cor@example.org>"; } >"$tmp/.msg"
	git commit -q -F "$tmp/.msg"
}

# ---------------------------------------------------------------- 1 block
python3 - <<'EOF'
p = 'include/linux/blk_types.h'
s = open(p).read()
old = '\t__REQ_ATOMIC,\t\t/* for atomic write operations */\n'
assert old in s
s = s.replace(old, old + '''\t/*
\t * The write does not change the data the device presents: it stores
\t * data the device already shows for that range (a copy-on-read copy of
\t * data read from a backing device, say).  Stacking drivers that
\t * present a backing device may use it to avoid marking the range
\t * changed; every other driver can ignore it.
\t */
\t__REQ_WRITE_UNCHANGED,
''')
old = '#define REQ_ATOMIC\t(__force blk_opf_t)(1ULL << __REQ_ATOMIC)\n'
assert old in s
s = s.replace(old, old + '#define REQ_WRITE_UNCHANGED\t((__force blk_opf_t)(1ULL << __REQ_WRITE_UNCHANGED))\n')
open(p, 'w').write(s)
EOF
cat >"$tmp/.body" <<'EOF'
Add a request flag for writes that do not change the data the device
presents: the writer stores data that the device already shows for that
range.  The case that needs it is copy-on-read: a stacking driver that
presents a backing device through a local one copies data it read from
the backing device into the local one.  The copy changes blocks of the
local device, but not what the stacked device shows.  When such a
stacked device is itself the destination of another copy-on-read device
over the same data, the lower device must be able to tell these writes
from user writes, or it marks every copied range as changed.

QEMU's block layer has had the same flag, BDRV_REQ_WRITE_UNCHANGED, since
its copy-on-read filter (2018), which sets it on the data it copies.

The flag is only a hint from the submitter; drivers that do not
present a backing device ignore it.  Bio and request handling is
unaffected: the flag travels in bi_opf like REQ_FUA or REQ_META.
EOF
commit "block: add REQ_WRITE_UNCHANGED" "$tmp/.body"

# ---------------------------------------------------------------- 2 kcopyd
python3 - <<'EOF'
p = 'include/linux/dm-kcopyd.h'
s = open(p).read()
old = '#define DM_KCOPYD_WRITE_SEQ    2\n'
assert old in s
s = s.replace(old, old + '#define DM_KCOPYD_WRITE_UNCHANGED 3\t/* writes carry REQ_WRITE_UNCHANGED */\n')
open(p, 'w').write(s)
p = 'drivers/md/dm-kcopyd.c'
s = open(p).read()
old = '''	/*
	 * If we need to write sequentially and some reads or writes failed,
	 * no point in continuing.
	 */'''
assert old in s
s = s.replace(old, '''	if (job->op == REQ_OP_WRITE && job->flags & BIT(DM_KCOPYD_WRITE_UNCHANGED))
		io_req.bi_opf |= REQ_WRITE_UNCHANGED;

''' + old, 1)
open(p, 'w').write(s)
EOF
cat >"$tmp/.body" <<'EOF'
Let dm-kcopyd's users mark the writes of a copy with REQ_WRITE_UNCHANGED:
a copy-on-read target copies regions that its device already shows, and
a cor device stacked below it needs to see that.  Only data writes get
the flag; zeroing writes (REQ_OP_WRITE_ZEROES) do not.  Sub-jobs inherit
the flag with the rest of the job's flags.
EOF
commit "dm kcopyd: add DM_KCOPYD_WRITE_UNCHANGED" "$tmp/.body"

# ---------------------------------------------------------------- 3 dm raid1
python3 - <<'EOF'
p = 'drivers/md/dm-raid1.c'
s = open(p).read()
old = '\tblk_opf_t op_flags = bio->bi_opf & (REQ_FUA | REQ_PREFLUSH);\n'
assert old in s
s = s.replace(old, '\tblk_opf_t op_flags = bio->bi_opf & (REQ_FUA | REQ_PREFLUSH | REQ_WRITE_UNCHANGED);\n')
open(p, 'w').write(s)
EOF
cat >"$tmp/.body" <<'EOF'
dm-raid1 rebuilds each write as a dm-io request to every mirror and keeps
only REQ_FUA and REQ_PREFLUSH of the original flags, so a mirror leg that
is a copy-on-read device would see an unchanged write as a user write.
Keep REQ_WRITE_UNCHANGED too.

The other device-mapper targets were checked for the same loss:

- linear, stripe, delay, flakey, dust, log-writes, switch, unstriped,
  zero, error, thin, cache, era, clone, snapshot (origin writes),
  integrity, verity, zoned and multipath map or clone the bio, so
  bi_opf, and the flag with it, reaches the lower device unchanged;
- crypt allocates its write bios with the original bio's bi_opf;
- dm-io passes the caller's bi_opf to every bio it builds;
- dm-kcopyd sets the flag when asked to (previous patch);
- writecache (write-back to the origin), snapshot (exception copies),
  integrity (journal) and ebs (read-modify-write of partial blocks)
  issue writes of their own that do change the data below them, so they
  must not carry the flag.
EOF
commit "dm raid1: keep REQ_WRITE_UNCHANGED on mirrored writes" "$tmp/.body"

# ---------------------------------------------------------------- 4 dm cor
mkdir -p drivers/md Documentation/admin-guide/device-mapper
for f in dm-cor-target.c dm-cor-metadata.c dm-cor-metadata.h dm-cor-format.h; do
	cp "$top/drivers/md/$f" drivers/md/
done
# the in-tree compat header: what 6.12 plus this series has, no probes
unifdef -DHAVE_BLK_MODE_T -DHAVE_REQ_WRITE_UNCHANGED -DHAVE_KCOPYD_WRITE_UNCHANGED \
	-o drivers/md/dm-cor-compat.h "$top/drivers/md/dm-cor-compat.h" || [ $? -eq 1 ]
python3 - <<'EOF'
import re
p = 'drivers/md/dm-cor-compat.h'
s = open(p).read()
s = s.replace('#include "dm-cor-config.h"\n\n', '')
s = s.replace('''/*
 * Every difference between the kernels dm-cor builds against lives here.
 * dm-cor-config.h is generated by scripts/compat/probe.sh, one HAVE_* per
 * compile probe; each probe names the upstream change it detects.
 */''', '''/*
 * Names dm-cor uses for kernel interfaces that differ between the kernels
 * its out-of-tree build supports; in the tree they are the kernel's own.
 */''')
open(p, 'w').write(s)
EOF
awk 'NR > 2' "$top/drivers/md/Kconfig" >"$tmp/cor.kconfig"
python3 - "$tmp/cor.kconfig" <<'EOF'
import sys
p = 'drivers/md/Kconfig'
s = open(p).read()
entry = open(sys.argv[1]).read()
anchor = 'config DM_MIRROR\n'
assert anchor in s
s = s.replace(anchor, entry + '\n' + anchor, 1)
open(p, 'w').write(s)
p = 'drivers/md/Makefile'
s = open(p).read()
old = 'dm-clone-y\t+= dm-clone-target.o dm-clone-metadata.o\n'
assert old in s
s = s.replace(old, old + 'dm-cor-y\t+= dm-cor-target.o dm-cor-metadata.o\n')
old = 'obj-$(CONFIG_DM_CLONE)\t\t+= dm-clone.o\n'
assert old in s
s = s.replace(old, old + 'obj-$(CONFIG_DM_COR)\t\t+= dm-cor.o\n')
open(p, 'w').write(s)
p = 'Documentation/admin-guide/device-mapper/index.rst'
s = open(p).read()
old = '    dm-clone\n'
assert old in s
s = s.replace(old, old + '    dm-cor\n')
open(p, 'w').write(s)
p = 'MAINTAINERS'
s = open(p).read()
anchor = 'DEVICE-MAPPER VDO TARGET\n'
assert anchor in s
s = s.replace(anchor, '''DEVICE-MAPPER COPY-ON-READ TARGET
M:	dm-cor developers <dm-cor@example.org>
L:	dm-devel@lists.linux.dev
S:	Maintained
F:	Documentation/admin-guide/device-mapper/dm-cor.rst
F:	drivers/md/dm-cor*

''' + anchor, 1)
open(p, 'w').write(s)
EOF
cp "$top/Documentation/admin-guide/device-mapper/dm-cor.rst" Documentation/admin-guide/device-mapper/
cat >"$tmp/.body" <<'EOF'
dm-cor presents a slow or remote origin device (NBD, iSCSI, an old SAN
LUN, a golden image) through a fast local destination device.  The first
read of a region is served from the origin: the whole region is read
into the target's own pages, the reader completes from them, and the
same pages are then written to the destination from a workqueue, so the
copy is off the reader's path and the origin is read once.  Later reads
of the region hit the destination.  Writes go to the destination (a
partial write to an uncopied region copies the region first); the
origin is never written.  Background hydration, with prefetch, copies
the rest, yielding to user I/O, so that the table can be reloaded as
linear over the destination once every region is hydrated.

dm-clone is the nearest target but does not copy on read: reads of
uncopied regions keep hitting the source.

State is two bitmaps (hydrated, dirty), 2 bits per region, kept on a
metadata device through dm-bufio: two superblock slots and two bitmap
areas with crc32c, committed on REQ_PREFLUSH/REQ_FUA and every second;
the destination is flushed before the metadata that points at it.  A
failed metadata write switches the device to read-only, then fail,
mode with a dm event.  Volatile metadata is allowed for read-only
tables, which still copy on read: copy writes carry REQ_WRITE_UNCHANGED,
so a read-only cor device can be shared as the origin of others, and a
cor device that receives unchanged writes keeps those regions clean.

Documentation/admin-guide/device-mapper/dm-cor.rst describes the table
line, status, messages, on-disk format and crash-safety argument.
EOF
commit "dm cor: add the copy-on-read target" "$tmp/.body"

# ---------------------------------------------------------------- 5 selftests
mkdir -p tools/testing/selftests/dm-cor
(cd "$top/tools/testing/selftests/dm-cor" &&
	git ls-files | while read -r f; do cp --parents "$f" "$work/tools/testing/selftests/dm-cor/"; done)
python3 - <<'EOF'
p = 'tools/testing/selftests/Makefile'
s = open(p).read()
old = 'TARGETS += dmabuf-heaps\n'
assert old in s
s = s.replace(old, 'TARGETS += dm-cor\n' + old)
open(p, 'w').write(s)
p = 'MAINTAINERS'
s = open(p).read()
old = 'F:\tdrivers/md/dm-cor*\n'
assert old in s
s = s.replace(old, old + 'F:\ttools/testing/selftests/dm-cor/\n')
open(p, 'w').write(s)
EOF
cat >"$tmp/.body" <<'EOF'
kselftests for dm-cor (KTAP output, skip with 4 when a prerequisite is
missing): table parsing, pattern round trips, partial and unaligned I/O
across region boundaries, writes racing copy-on-read (model-checked by
cor-race), fio with crc32c verification, reloads, discards, read-only
tables, origin/destination/metadata faults, flush and FUA durability,
status and messages, background hydration and prefetch.  Each test ends
by checking the kernel log, that no dm device was left behind, that the
origin is unchanged and that the metadata passes cor_check.

The tests need root, dmsetup, fio and scratch block devices (set
COR_DISKS, see lib.sh).
EOF
commit "selftests: dm-cor: add the dm-cor tests" "$tmp/.body"

# ---------------------------------------------------------------- export
rm -rf "$out"
mkdir -p "$out"
cat >"$tmp/.cover" <<'EOF'
dm: a copy-on-read target, and REQ_WRITE_UNCHANGED

This series adds dm-cor, a device-mapper target that copies on read: it
presents a slow or remote origin device through a fast local one, serves
the first read of a region from the origin, and copies that region to the
local device off the reader's path, so later reads are local.  Writes go
to the local device; the origin is never written.  Background hydration
finishes the copy so that the origin can be detached.  Use cases: boot
VMs at once from a remote golden image, migrate a live volume off old
storage, cache an immutable data set on local NVMe.

Patches 1-3 add REQ_WRITE_UNCHANGED, the block-layer counterpart of
QEMU's BDRV_REQ_WRITE_UNCHANGED (added with its copy-on-read filter in
2018): the write does not change what the device presents.  dm-cor sets
it on its copy writes and honours it on writes it receives, so cor
devices stack.  Patch 4 is the target, patch 5 its selftests.

Based on Debian's linux-source-6.12.
EOF
git format-patch -q --cover-letter -o "$out" "$base"..HEAD
python3 - "$out" "$tmp/.cover" <<'EOF'
import glob, sys
out, cover = sys.argv[1], open(sys.argv[2]).read().split('\n', 1)
p = glob.glob(out + '/0000-cover-letter.patch')[0]
s = open(p).read()
s = s.replace('*** SUBJECT HERE ***', cover[0]).replace('*** BLURB HERE ***', cover[1].strip())
open(p, 'w').write(s)
EOF
ls "$out"

if [ $check -eq 1 ]; then
	cp=$("$top/scripts/get-checkpatch.sh")
	bad=0
	for p in "$out"/0*.patch; do
		case $p in *0000-cover-letter.patch) continue ;; esac
		res=$("$cp" --strict --no-tree --terse "$p" 2>&1 | tail -n 1 || true)
		echo "$(basename "$p"): ${res:-clean}"
		# --terse prints nothing for a clean patch
		[ -z "$res" ] || echo "$res" | grep -q 'total: 0 errors, 0 warnings, 0 checks' || bad=1
	done
	exit $bad
fi
