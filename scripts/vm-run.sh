#!/bin/bash
# Run a command inside a QEMU VM booting one of the host's Debian kernels.
#
# Usage: scripts/vm-run.sh --kernel 6.1|6.12|<uname -r> [options] [--] CMD [ARG...]
#        scripts/vm-run.sh --kernel-image DIR [options] [--] CMD [ARG...]
#   --kernel K       6.1 / 6.12 = newest /boot/vmlinuz-6.1.* / 6.12.*, or an
#                    exact uname -r (this or --kernel-image is required)
#   --kernel-image DIR  boot the debug kernel that scripts/build-debug-kernel.sh
#                    built in DIR (the path it prints): DIR/vmlinux (PVH) or
#                    DIR/bzImage, modules from DIR/modroot; --module must be
#                    built against DIR/src. After the run, the log is checked
#                    with scripts/debug-kernel-check.sh: any KASAN, lockdep,
#                    kmemleak or atomic-sleep report makes the exit status 1
#                    (when the command itself passed)
#   --no-check-reports  skip that check
#   --module KO      install KO as /lib/modules/KVER/extra/dm-cor.ko (not loaded;
#                    tests run `modprobe dm-cor`); its vermagic must match KVER
#   --out DIR        run directory (default build/vm/<kver>-run; use one per
#                    concurrent run): console.log (guest output), kernel.log
#                    (live kernel console), dmesg.txt (same, no CRs),
#                    initramfs.cpio, disk0..3.img
#   --timeout SECS   whole boot+run limit (default 2400)
#   --mem MB         guest memory (default 2048)
#   --smp N          guest CPUs (default 2)
#   --disk-size SIZE scratch disk size (default 1G; 4 disks: /dev/vda..vdd)
#   --keep-disks     keep OUT/disk0..3.img after the run (deleted by default)
#   --env NAME=VAL   export NAME in the guest (repeatable); host variables
#                    named DMCOR_* and KSFT_* are passed through as well
#   --append ARGS    extra kernel command line
#   --accel A        auto (default), kvm or tcg
#   --cpu MODEL      QEMU -cpu (default: QEMU's qemu64 under TCG, the
#                    fastest to boot; host under KVM)
#   --print-kver     print the resolved uname -r and exit
# The kernel is booted as an uncompressed vmlinux via PVH (extracted once to
# build/vm/vmlinux-KVER; ~3 s faster under TCG); DMCOR_VM_NO_PVH=1 boots
# the bzImage instead.
# One CMD word is run as a bash script string (`-- 'a && b'` works);
# several words are run as an argv.
# Guest: cwd /dm-cor; the repo's tools/testing/selftests/dm-cor/ and
# tools/dm-cor/ (with built binaries) at /dm-cor/tools/..., demo-guest.sh at
# /dm-cor/scripts/; PATH includes /dm-cor/tools/dm-cor; DM_DISABLE_UDEV=1;
# tmpfs /tmp; stdin /dev/null; scratch disks /dev/vda../dev/vdd (zeroed).
# The kernel runs with oops=panic: an oops ends the run at once (exit 125).
# Exit status: the guest command's, or 125 when the VM produced no result
# (kernel crash, hang, timeout); then the kernel log tail is printed.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$SELF")")

die() { echo "vm-run: error: $*" >&2; exit 2; }
log() { echo "vm-run: $*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SELF"; }

kernel='' module='' out='' timeout_s=2400 mem=2048 smp=2 disk_size=1G
kimage='' check_reports=1
append='' accel=auto cpu='' print_kver=0 keep_disks=0
ndisks=4
envs=()
while (($#)); do
	case $1 in
		--kernel) kernel=${2:?--kernel needs a value}; shift 2 ;;
		--kernel-image) kimage=${2:?--kernel-image needs a directory}; shift 2 ;;
		--no-check-reports) check_reports=0; shift ;;
		--module) module=${2:?--module needs a path}; shift 2 ;;
		--out) out=${2:?--out needs a directory}; shift 2 ;;
		--timeout) timeout_s=${2:?}; shift 2 ;;
		--mem) mem=${2:?}; shift 2 ;;
		--smp) smp=${2:?}; shift 2 ;;
		--disk-size) disk_size=${2:?}; shift 2 ;;
		--env) envs+=("${2:?}"); shift 2 ;;
		--append) append=${2?}; shift 2 ;;
		--accel) accel=${2:?}; shift 2 ;;
		--cpu) cpu=${2:?}; shift 2 ;;
		--print-kver) print_kver=1; shift ;;
		--keep-disks) keep_disks=1; shift ;;
		-h|--help) usage; exit 0 ;;
		--) shift; break ;;
		-*) die "unknown option '$1' (try --help)" ;;
		*) break ;;
	esac
done
[[ -n $kernel || -n $kimage ]] || die "--kernel is required (6.1, 6.12 or a full uname -r)"
[[ -z $kernel || -z $kimage ]] || die "--kernel and --kernel-image exclude each other"
[[ $timeout_s =~ ^[0-9]+$ && $timeout_s -gt 0 ]] || die "--timeout must be a positive integer"
[[ $mem =~ ^[0-9]+$ ]] || die "--mem must be an integer (MB)"
[[ $smp =~ ^[0-9]+$ ]] || die "--smp must be an integer"
case $accel in auto|kvm|tcg) ;; *) die "--accel must be auto, kvm or tcg" ;; esac

# ------------------------------------------------------------ kernel
resolve_kernel() {
	local k=$1 f
	if [[ -f /boot/vmlinuz-$k ]]; then
		echo "$k"
		return
	fi
	f=$(find /boot -maxdepth 1 -name "vmlinuz-$k.*" -printf '%f\n' | sed 's/^vmlinuz-//' |
		sort -V | tail -n1)
	[[ -n $f ]] || die "no kernel matching '$k' in /boot (have: $(cd /boot && echo vmlinuz-*))"
	echo "$f"
}
modroot=''
if [[ -n $kimage ]]; then
	[[ -f $kimage ]] && kimage=$(dirname "$kimage")
	kimage=$(readlink -f "$kimage")
	[[ -f $kimage/kernel.release && -f $kimage/bzImage ]] ||
		die "--kernel-image $kimage: no kernel.release/bzImage (run scripts/build-debug-kernel.sh)"
	kver=$(cat "$kimage/kernel.release")
	vmlinuz=$kimage/bzImage
	modroot=$kimage/modroot
else
	check_reports=0
	kver=$(resolve_kernel "$kernel")
	vmlinuz=/boot/vmlinuz-$kver
fi
if ((print_kver)); then
	echo "$kver"
	exit 0
fi
(($#)) || die "no guest command given (usage: vm-run.sh --kernel K [opts] -- CMD...)"
[[ -r $vmlinuz ]] || die "cannot read $vmlinuz"
[[ -d $modroot/lib/modules/$kver ]] || die "no $modroot/lib/modules/$kver for $vmlinuz"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing; run scripts/install-deps.sh"

if [[ -n $module ]]; then
	[[ -f $module ]] || die "module '$module' not found"
	module=$(readlink -f "$module")
	vm=$(modinfo -F vermagic "$module" 2>/dev/null | awk '{print $1}') ||
		die "modinfo cannot read $module"
	[[ $vm == "$kver" ]] ||
		die "$module was built for '${vm:-?}', but the VM boots $kver (build with make KVER=$kver)"
fi

# Boot the uncompressed vmlinux through its PVH entry when possible: it
# skips the bzImage self-decompression, ~3 s under TCG. Cached per kernel.
pvh_image() {
	local cache=$REPO/build/vm/vmlinux-$kver magic tool off tmp
	if [[ -s $cache && $cache -nt $vmlinuz ]]; then
		echo "$cache"
		return 0
	fi
	command -v readelf >/dev/null || return 1
	mkdir -p "$REPO/build/vm"
	tmp=$(mktemp "$cache.XXXXXX")
	for magic in '\xfd7zXZ\x00:xz' '\x28\xb5\x2f\xfd:zstd' '\x1f\x8b\x08:gzip'; do
		tool=${magic##*:}
		command -v "$tool" >/dev/null || continue
		off=$(LC_ALL=C grep -obUaP "${magic%:*}" "$vmlinuz" | head -n1 | cut -d: -f1) || true
		[[ -n $off ]] || continue
		tail -c +$((off + 1)) "$vmlinuz" | "$tool" -dcq >"$tmp" 2>/dev/null || true
		if readelf -n "$tmp" 2>/dev/null | grep -q 'Xen .*(0x00000012)'; then
			mv "$tmp" "$cache"
			echo "$cache"
			return 0
		fi
	done
	rm -f "$tmp"
	return 1
}
boot_image=$vmlinuz
if [[ -n $kimage ]]; then
	[[ -n ${DMCOR_VM_NO_PVH:-} ]] || boot_image=$kimage/vmlinux
elif [[ -z ${DMCOR_VM_NO_PVH:-} ]] && img=$(pvh_image); then
	boot_image=$img
fi

# ------------------------------------------------------------ run dir
out=${out:-$REPO/build/vm/$kver-run}
mkdir -p "$out"
out=$(readlink -f "$out")
rm -rf "$out/.extra"
rm -f "$out"/{console.log,kernel.log,dmesg.txt,initramfs.cpio} "$out"/disk*.img

# command + environment for the guest
mkdir -p "$out/.extra/dm-cor/.run"
{
	echo "# generated by vm-run.sh"
	if (($# == 1)); then
		printf '%s\n' "$1"
	else
		printf 'exec'
		printf ' %q' "$@"
		printf '\n'
	fi
} >"$out/.extra/dm-cor/.run/cmd.sh"
{
	printf 'export DMCOR_VM=1 DMCOR_VM_KVER=%q DMCOR_VM_DISKS=%q\n' "$kver" "$ndisks"
	while IFS='=' read -r name _; do
		[[ $name =~ ^(DMCOR|KSFT)_[A-Za-z0-9_]*$ ]] || continue
		[[ $name == DMCOR_VM* ]] && continue
		printf 'export %s=%q\n' "$name" "${!name}"
	done < <(env)
	for e in "${envs[@]}"; do
		[[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants NAME=VALUE, got '$e'"
		printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"
	done
} >"$out/.extra/dm-cor/.run/env.sh"

t_start=$EPOCHREALTIME
mkargs=(--kver "$kver" --out "$out/initramfs.cpio" --cache-dir "$REPO/build/vm" --extra "$out/.extra")
[[ -n $module ]] && mkargs+=(--module "$module")
[[ -n $modroot ]] && mkargs+=(--mod-root "$modroot")
"$REPO/scripts/mkinitramfs.sh" "${mkargs[@]}" || die "building the initramfs failed"

disks=()
for ((i = 0; i < ndisks; i++)); do
	truncate -s "$disk_size" "$out/disk$i.img" || die "cannot create $out/disk$i.img"
	disks+=(-drive "file=$out/disk$i.img,format=raw,if=virtio,cache=unsafe,discard=unmap")
done

# ------------------------------------------------------------ accelerator
# KVM is used only if a stock kernel really boots with it (it may exist but
# not work, e.g. nested); the verdict is cached per host boot and kernel.
kvm_works() {
	local cache boot_id probe
	[[ -r /dev/kvm && -w /dev/kvm ]] || return 1
	boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo none)
	cache=$REPO/build/vm/.kvm-probe-$kver
	if [[ -f $cache ]] && [[ $(head -n1 "$cache") == "$boot_id" ]]; then
		[[ $(sed -n 2p "$cache") == yes ]]
		return
	fi
	probe=$out/kvm-probe.log
	# Boots without an initramfs: reaching the "no root fs" panic proves it.
	timeout --foreground -k 2 20 qemu-system-x86_64 -accel kvm -cpu host -m 256 \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$vmlinuz" -append "console=ttyS0 panic=-1 root=/dev/dmcor-none" \
		-chardev "file,id=p,path=$probe" -serial chardev:p </dev/null >/dev/null 2>&1 || true
	local ok=no
	grep -qE 'Kernel panic|VFS: Unable to mount root' "$probe" 2>/dev/null && ok=yes
	printf '%s\n%s\n' "$boot_id" "$ok" >"$cache"
	[[ $ok == yes ]]
}
case $accel in
	auto) if kvm_works; then accel=kvm; else accel=tcg; fi ;;
	kvm) [[ -w /dev/kvm ]] || die "--accel kvm but /dev/kvm is not usable" ;;
esac
if [[ $accel == kvm ]]; then
	accel_args=(-accel kvm -cpu "${cpu:-host}")
else
	accel_args=(-accel "tcg,thread=multi")
	[[ -n $cpu ]] && accel_args+=(-cpu "$cpu")
fi

# ------------------------------------------------------------ boot
cmdline="console=ttyS1,115200 loglevel=7 panic=-1 oops=panic printk.devkmsg=on"
cmdline+=" mitigations=off rdinit=/init"
# Debug kernel: the ACPI interpreter under KASAN+TCG runs QEMU's _PRT loop
# into its 30 s AML timeout once per PCI device; route IRQs without ACPI.
[[ -n $kimage ]] && cmdline+=" pci=noacpi"
cmdline+="${append:+ $append}"
log "booting $kver ($accel, ${mem} MB, $smp CPUs, ${boot_image##*/}), output in $out"
log "guest command:$(printf ' %q' "$@")"
# stdin is /dev/null: no tty is touched and the guest gets no input. QEMU's
# stdout is a FIFO read by tee, so guest output reaches the caller as it is
# produced. QEMU runs in the background so that a signal to this script
# (Ctrl-C, CI cancel) is handled at once: the trap stops the VM.
fifo=$out/.console.fifo
rm -f "$fifo"
mkfifo "$fifo"
tee "$out/console.log" <"$fifo" &
tee_pid=$!
timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 \
	"${accel_args[@]}" -m "$mem" -smp "$smp" \
	-nodefaults -no-user-config -display none -no-reboot \
	-kernel "$boot_image" -initrd "$out/initramfs.cpio" -append "$cmdline" \
	-chardev stdio,id=con,signal=off -serial chardev:con \
	-chardev "file,id=klog,path=$out/kernel.log" -serial chardev:klog \
	-device virtio-rng-pci \
	"${disks[@]}" </dev/null >"$fifo" &
qemu_pid=$!
interrupted=''
trap 'interrupted=1; kill -TERM "$qemu_pid" 2>/dev/null' INT TERM HUP
while :; do
	qrc=0
	wait "$qemu_pid" || qrc=$?
	kill -0 "$qemu_pid" 2>/dev/null || break
done
trap - INT TERM HUP
wait "$tee_pid" || true
rm -f "$fifo"
t_end=$EPOCHREALTIME

tr -d '\r' <"$out/kernel.log" >"$out/dmesg.txt" 2>/dev/null || : >"$out/dmesg.txt"
((keep_disks)) || rm -f "$out"/disk*.img
secs=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')
up=$(sed -n 's/^dm-cor-vm: kernel .*userspace up at \([0-9.]*\)s.*/\1/p' "$out/console.log" | tail -n1)
log "boot+run took ${secs}s (guest userspace up at ${up:-?}s guest time)"

rc=$(tr -d '\r' <"$out/console.log" | sed -n 's/^DMCOR_EXIT=\([0-9]\{1,3\}\)$/\1/p' | tail -n1)
if [[ -z $rc ]]; then
	rc=$(sed -n 's/.*dm-cor-vm: DMCOR_EXIT=\([0-9]\{1,3\}\)$/\1/p' "$out/dmesg.txt" | tail -n1)
fi
if [[ -n $interrupted ]]; then
	log "interrupted: VM stopped"
	exit 130
fi
if [[ -n $rc ]]; then
	if ((check_reports)) && ! "$REPO/scripts/debug-kernel-check.sh" "$out" >&2; then
		log "debug-kernel reports found (see above and $out/dmesg.txt)"
		((rc)) || rc=1
	fi
	exit "$rc"
fi
((check_reports)) && { "$REPO/scripts/debug-kernel-check.sh" "$out" >&2 || true; }

if ((qrc == 124 || qrc == 137)); then
	why="timed out after ${timeout_s}s (hang?)"
elif grep -q 'Kernel panic' "$out/dmesg.txt"; then
	why="the guest kernel panicked"
else
	why="QEMU exited with status $qrc without a result (crash?)"
fi
{
	echo "vm-run: FAILED: no DMCOR_EXIT marker: $why"
	echo "vm-run: last 50 lines of $out/dmesg.txt:"
	tail -n 50 "$out/dmesg.txt" | sed 's/^/  | /'
} >&2
exit 125
