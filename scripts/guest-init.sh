#!/bin/bash
# /init of the dm-cor test VM (installed by scripts/mkinitramfs.sh, booted by
# scripts/vm-run.sh). Sets up a minimal system, runs the command that
# vm-run.sh stored in /dm-cor/.run/cmd.sh from /dm-cor, prints
# "DMCOR_EXIT=<rc>" on the test console (ttyS0) and powers off.
# Kernel messages go to ttyS1 (console=ttyS1), which the host logs to a file.
#
# PID 1 must never exit, so no `set -e` here: every step is checked by hand.
set -u

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/dm-cor/tools/dm-cor
export HOME=/root TERM=dumb LANG=C LC_ALL=C TMPDIR=/tmp SHELL=/bin/bash
# No udev in the guest: dmsetup/libdevmapper create /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1

mnt() { # TYPE DIR [OPTIONS]
	mkdir -p "$2"
	mount -t "$1" ${3:+-o "$3"} "$1" "$2" 2>/dev/null
}

mnt proc /proc
mnt sysfs /sys
mnt devtmpfs /dev
mnt devpts /dev/pts
mnt tmpfs /dev/shm mode=1777
mnt tmpfs /tmp mode=1777
mnt tmpfs /run mode=755
mnt debugfs /sys/kernel/debug || true
[[ -d /dev/fd ]] || ln -s /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr

# Test output goes to the first serial port, without CR insertion.
if [[ -c /dev/ttyS0 ]]; then
	exec </dev/null >/dev/ttyS0 2>&1
	stty -F /dev/ttyS0 -onlcr 2>/dev/null || true
else
	echo "dm-cor-vm: WARNING: no /dev/ttyS0, test output goes to the kernel console"
fi

log() { echo "dm-cor-vm: $*"; }

hostname dmcor-vm 2>/dev/null || true
ip link set lo up 2>/dev/null || true
[[ -r /proc/sys/kernel/sysrq ]] && echo 1 >/proc/sys/kernel/sysrq

# Command and environment from the host.
if [[ -r /dm-cor/.run/env.sh ]]; then
	# shellcheck disable=SC1091
	source /dm-cor/.run/env.sh
fi

# one modprobe process is much faster than several under TCG
if ! modprobe -a virtio_pci virtio_blk dm-mod dm-bufio configfs; then
	for m in virtio_pci virtio_blk dm-mod dm-bufio configfs; do
		modprobe "$m" || log "WARNING: modprobe $m failed"
	done
fi
mountpoint -q /sys/kernel/config || mnt configfs /sys/kernel/config || true

# virtio-blk probing is synchronous, but bound-wait for the nodes anyway.
want=${DMCOR_VM_DISKS:-0}
for ((i = 0; i < 100; i++)); do
	have=0
	for d in /dev/vd[a-z]; do [[ -b $d ]] && have=$((have + 1)); done
	((have >= want)) && break
	sleep 0.05
done
((have >= want)) || log "WARNING: expected $want scratch disks, found $have"

read -r up _ </proc/uptime
log "kernel $(uname -r), userspace up at ${up}s, ${have} scratch disks"

rc=127
if [[ -r /dm-cor/.run/cmd.sh ]]; then
	cd /dm-cor || cd /
	bash /dm-cor/.run/cmd.sh
	rc=$?
else
	log "ERROR: no /dm-cor/.run/cmd.sh (initramfs built without a command?)"
fi
cd /
read -r up _ </proc/uptime
log "command exited with $rc at ${up}s"

# Debug kernels (kmemleak built in): report leaks now that the command is done.
if [[ -e /sys/kernel/debug/kmemleak && ${DMCOR_VM_KMEMLEAK_SCAN:-1} != 0 ]]; then
	bash /dm-cor/scripts/debug-kernel-check.sh --scan
fi

# Stop leftovers (they could hold the console open or keep writing).
kill -TERM -1 2>/dev/null
kill -KILL -1 2>/dev/null
for ((i = 0; i < 40; i++)); do
	left=0
	for p in /proc/[0-9]*; do
		[[ ${p#/proc/} == "$$" ]] && continue
		[[ -e $p/exe ]] && { left=1; break; }
	done
	((left)) || break
	sleep 0.05
done
sync

# The marker goes to ttyS0 through a fresh open whose close is the last one,
# so the kernel drains the UART before poweroff; also to the kernel log.
exec >/dev/console 2>&1
echo "DMCOR_EXIT=$rc" >/dev/ttyS0
echo "dm-cor-vm: DMCOR_EXIT=$rc" >/dev/kmsg
poweroff -f
echo o >/proc/sysrq-trigger
while :; do sleep 60; done
