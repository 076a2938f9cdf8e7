#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Boot a root filesystem on a cor device through Debian's own
# initramfs-tools and dm-cor's initramfs hook, the headline use case.  Run
# by scripts/package-test.sh while dm-cor-dkms and dm-cor-tools are
# installed (DKMS's module, /usr/sbin/corctl, the hook and the local-top
# and local-block scripts under /usr/share/initramfs-tools); needs root.
#
# For each kernel: a 64 MiB ext4 image (busybox, an /sbin/init script and
# a few MiB of random data) is the origin /dev/vda (read-only), a zeroed
# destination is /dev/vdb and a zeroed metadata device /dev/vdc.  A
# temporary /etc/cortab "vmroot /dev/vda /dev/vdb /dev/vdc
# format,initramfs" (any existing one is kept in /etc/cortab.rootboot-test
# and put back right after mkinitramfs, also on failure or interrupt) goes
# into an initramfs that mkinitramfs builds into build/rootboot/ (never
# /boot); QEMU (TCG) boots /boot/vmlinuz-KVER with it and
# root=/dev/mapper/vmroot.  The guest's init prints
#   DMCOR-ROOT: root=MAJ:MIN dm=NAME file=SHA256
# (the device of / from mountinfo, its device-mapper name, the data file's
# checksum) and powers off.  Checks, one line each (ok / FAILED):
#   - the initramfs holds corctl, the dm-cor module, etc/cortab and the
#     local-top and local-block scripts (lsinitramfs)
#   - the guest printed the marker with dm=vmroot and the right checksum
#   - cor_check on the metadata image after the boot: clean, >0 regions
#     hydrated
#   - the destination equals the origin on every hydrated region that is
#     not dirty (cor_dump -f xml) and on the first 64 KiB (the superblock)
# The kernels run side by side.  Exits non-zero if any check failed.
# Logs, initramfs images and disks in build/rootboot/.
#
# usage: scripts/rootboot-test.sh [KERNEL...]   (6.1, 6.12 or an exact
#        uname -r, as scripts/vm-run.sh --kernel; default: 6.12)
# COR_TOOLS_DIR: where cor_check and cor_dump are (default /usr/sbin)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.12)
logs=build/rootboot
tools=${COR_TOOLS_DIR:-/usr/sbin}
cortab=/etc/cortab
saved=/etc/cortab.rootboot-test
boot_timeout=300
CHECKS_NAME="rootboot test"
# shellcheck source=scripts/lib-checks.sh
. scripts/lib-checks.sh


# ---------------------------------------------------------------- setup
[ "$(id -u)" -eq 0 ] || { bad "must run as root (writes /etc/cortab)"; finish; }
if [ -e "$saved" ]; then
	bad "$saved exists (an interrupted run's copy of /etc/cortab?): put it back first"
	finish
fi
for t in mkinitramfs lsinitramfs mke2fs qemu-system-x86_64 "$tools/cor_check" \
	"$tools/cor_dump" /usr/sbin/corctl /usr/share/initramfs-tools/hooks/dm-cor; do
	command -v "$t" >/dev/null || { bad "$t missing (are the packages installed?)"; finish; }
done
resolve_kernels "${kernels[@]}"
rm -rf "$logs"
mkdir -p "$logs"

had_cortab=0 cortab_written=0
declare -A pid_of=()
# put /etc/cortab back as it was (idempotent)
restore_cortab() {
	[ "$cortab_written" = 1 ] || return 0
	if [ "$had_cortab" = 1 ]; then
		mv -f "$saved" "$cortab"
	else
		rm -f "$cortab"
	fi
	cortab_written=0
}
# shellcheck disable=SC2317	# run by the EXIT trap
cleanup() {
	local p

	trap '' INT TERM HUP	# a second signal must not cut this short
	restore_cortab
	for p in "${pid_of[@]}"; do
		if kill -TERM "$p" 2>/dev/null; then wait "$p" 2>/dev/null || true; fi
	done
	return 0
}
trap 'cleanup; summary' EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------- root image
# /sbin/init: the marker, a pause for the target's periodic metadata
# commit (1 s), then power off.  proc and sysfs are moved over from the
# initramfs already; mounting them again does no harm.
root=$logs/root
mkdir -p "$root"/bin "$root"/sbin "$root"/dev "$root"/proc "$root"/sys \
	"$root"/run "$root"/tmp "$root"/etc "$root"/data
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
head -c 4M /dev/urandom >"$root/data/random.bin"
data_sum=$(sha256sum "$root/data/random.bin" | awk '{ print $1 }')
cat >"$root/sbin/init" <<'EOF'
#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc 2>/dev/null
$bb mount -t sysfs sysfs /sys 2>/dev/null
dev=$($bb awk '$5 == "/" { d = $3 } END { print d }' /proc/self/mountinfo)
name=$($bb cat "/sys/dev/block/$dev/dm/name" 2>/dev/null)
sum=$($bb sha256sum /data/random.bin | $bb awk '{ print $1 }')
echo "DMCOR-ROOT: root=$dev dm=${name:-none} file=${sum:-none}"
$bb sync
$bb sleep 3
$bb poweroff -f
echo o >/proc/sysrq-trigger
EOF
chmod 0755 "$root/sbin/init"
if ! mke2fs -q -F -t ext4 -d "$root" "$logs/root.img" 64M >"$logs/mke2fs.log" 2>&1; then
	bad "mke2fs -d of the root image: $(tail -n 3 "$logs/mke2fs.log" | tr '\n' ' ')"
	finish
fi

# ---------------------------------------------------------------- initramfs
if [ -e "$cortab" ]; then
	had_cortab=1
	cp -p "$cortab" "$saved"
fi
cortab_written=1
echo "vmroot /dev/vda /dev/vdb /dev/vdc format,initramfs" >"$cortab"
t0=$(date +%s)
for k in "${kernels[@]}"; do
	kver=${kver_of[$k]}
	mkinitramfs -o "$logs/initrd-$kver.img" "$kver" >"$logs/mkinitramfs-$kver.log" 2>&1 &
	pid_of[$k]=$!
done
declare -A rc_of=()
for k in "${kernels[@]}"; do
	rc_of[$k]=0
	wait "${pid_of[$k]}" || rc_of[$k]=$?
	unset "pid_of[$k]"
done
restore_cortab
secs=$(($(date +%s) - t0))

declare -A boot=()
for k in "${kernels[@]}"; do
	kver=${kver_of[$k]}
	img=$logs/initrd-$kver.img
	if [ "${rc_of[$k]}" != 0 ]; then
		bad "mkinitramfs for $kver (exit ${rc_of[$k]}): $(tail -n 3 "$logs/mkinitramfs-$kver.log" |
			tr '\n' ' ')(log: $logs/mkinitramfs-$kver.log)"
		continue
	fi
	lsinitramfs "$img" >"$logs/initrd-$kver.txt" 2>&1 || true
	missing=()
	for f in usr/sbin/corctl etc/cortab scripts/local-top/dm-cor scripts/local-block/dm-cor; do
		grep -qxF "$f" "$logs/initrd-$kver.txt" || missing+=("$f")
	done
	# the module, compressed or not, under lib/modules/KVER/ (usr/lib/... too)
	grep -F "lib/modules/$kver/" "$logs/initrd-$kver.txt" |
		grep -qE '/dm-cor\.ko(\.[a-z]+)?$' || missing+=("lib/modules/$kver/.../dm-cor.ko")
	if [ ${#missing[@]} -eq 0 ]; then
		ok "mkinitramfs for $kver ($secs s, side by side): corctl, dm-cor.ko, etc/cortab, local-top and local-block scripts"
		boot[$k]=1
	else
		bad "mkinitramfs for $kver: the initramfs lacks ${missing[*]} (list: $logs/initrd-$kver.txt)"
	fi
done

# ---------------------------------------------------------------- boot
t0=$(date +%s)
for k in "${kernels[@]}"; do
	[ -n "${boot[$k]:-}" ] || continue
	kver=${kver_of[$k]}
	d=$logs/$kver
	mkdir -p "$d"
	truncate -s 64M "$d/dest.img"
	truncate -s 1M "$d/meta.img"
	timeout --foreground -k 10 "$boot_timeout" qemu-system-x86_64 \
		-accel tcg,thread=multi -m 1024 -smp 1 \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "/boot/vmlinuz-$kver" -initrd "$logs/initrd-$kver.img" \
		-append "root=/dev/mapper/vmroot rootfstype=ext4 ro console=ttyS0 panic=-1 rootwait quiet" \
		-serial "file:$d/console.log" -device virtio-rng-pci \
		-drive "file=$logs/root.img,format=raw,if=virtio,readonly=on" \
		-drive "file=$d/dest.img,format=raw,if=virtio" \
		-drive "file=$d/meta.img,format=raw,if=virtio" \
		</dev/null >"$d/qemu.log" 2>&1 &
	pid_of[$k]=$!
done
for k in "${kernels[@]}"; do
	[ -n "${pid_of[$k]:-}" ] || continue
	kver=${kver_of[$k]}
	d=$logs/$kver
	rc=0
	wait "${pid_of[$k]}" || rc=$?
	unset "pid_of[$k]"
	secs=$(($(date +%s) - t0))
	tr -d '\r' <"$d/console.log" >"$d/console.txt" 2>/dev/null || : >"$d/console.txt"
	marker=$(grep -a -m 1 '^DMCOR-ROOT: ' "$d/console.txt" || true)
	if [[ $marker == "DMCOR-ROOT: root="*" dm=vmroot file=$data_sum" ]]; then
		ok "root=/dev/mapper/vmroot boots on $kver ($secs s): ${marker/$data_sum/sha256 of the data file}"
	else
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			why="timed out after $boot_timeout s"
		elif grep -aq 'Gave up waiting' "$d/console.txt"; then
			why="gave up waiting for the root device"
		elif grep -aq 'Kernel panic' "$d/console.txt"; then
			why="kernel panic"
		else
			why="QEMU exit $rc"
		fi
		bad "root=/dev/mapper/vmroot on $kver ($why): '${marker:-no marker}' (expected dm=vmroot file=$data_sum; log: $d/console.txt)"
		echo "  last 30 lines of $d/console.txt:"
		tail -n 30 "$d/console.txt" | sed 's/^/  | /'
		continue
	fi

	# ------------------------------------------------------------ metadata
	out=$("$tools/cor_check" "$d/meta.img" 2>&1) && rc=0 || rc=$?
	echo "$out" >"$d/cor_check.txt"
	hyd=$(echo "$out" | sed -n 's|.* \([0-9]*\)/[0-9]* hydrated.*|\1|p' | tail -n 1)
	if [ $rc -eq 0 ] && [ "${hyd:-0}" -gt 0 ]; then
		ok "cor_check of the metadata after the boot on $kver: $(echo "$out" | tail -n 1 | sed "s/^cor_check: //")"
	else
		bad "cor_check of the metadata after the boot on $kver (exit $rc, ${hyd:-no} regions hydrated): $(echo "$out" | tail -n 2 | tr '\n' ' ')"
		continue
	fi

	# the destination holds the origin's data on every hydrated, clean region
	if ! "$tools/cor_dump" -f xml "$d/meta.img" >"$d/cor_dump.xml" 2>&1; then
		bad "cor_dump of the metadata after the boot on $kver: $(head -n 2 "$d/cor_dump.xml" | tr '\n' ' ')"
		continue
	fi
	# runs "FIRST COUNT REGION_SECTORS" of hydrated regions that are not dirty
	awk -F'"' '
		/<cor_metadata / { for (i = 1; i < NF; i++) if ($i ~ /region_sectors=$/) rs = $(i + 1) }
		/<hydrated / { kind = "h" } /<dirty / { kind = "d" }
		/<range / {
			for (r = $2; r < $2 + $4; r++)
				if (kind == "h") h[r] = 1; else dirty[r] = 1
		}
		END {
			for (r in h) if (!(r in dirty)) keep[r + 0] = 1
			n = asorti(keep, sorted, "@ind_num_asc")
			first = -1
			for (i = 1; i <= n; i++) {
				r = sorted[i] + 0
				if (first >= 0 && r == last + 1) { last = r; continue }
				if (first >= 0) print first, last - first + 1, rs
				first = last = r
			}
			if (first >= 0) print first, last - first + 1, rs
		}' "$d/cor_dump.xml" >"$d/runs.txt"
	ndirty=$(awk -F'"' '/<dirty / { print $2 }' "$d/cor_dump.xml")
	nreg=0 diff=()
	while read -r first count rs; do
		off=$((first * rs * 512)) len=$((count * rs * 512))
		nreg=$((nreg + count))
		cmp -s -i "$off:$off" -n "$len" "$logs/root.img" "$d/dest.img" ||
			diff+=("$first-$((first + count - 1))")
	done <"$d/runs.txt"
	cmp -s -n 65536 "$logs/root.img" "$d/dest.img" || diff+=("the first 64 KiB")
	if [ "$nreg" -gt 0 ] && [ ${#diff[@]} -eq 0 ]; then
		ok "destination equals origin on $kver on the $nreg hydrated regions ($(wc -l <"$d/runs.txt") runs, ${ndirty:-?} dirty) and the first 64 KiB"
	else
		bad "destination differs from origin on $kver: regions ${diff[*]:-none compared} (runs: $d/runs.txt)"
	fi
done

finish
