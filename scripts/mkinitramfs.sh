#!/bin/bash
# Build the initramfs for the dm-cor QEMU test VM (used by scripts/vm-run.sh).
#
# Usage: scripts/mkinitramfs.sh --kver KVER --out FILE [--cache-dir DIR]
#            [--module PATH/dm-cor.ko] [--extra DIR] [--base-only]
#            [--mod-root DIR]
#
# The result is three concatenated newc cpio archives (the kernel unpacks
# them in order, later entries win):
#  1. base-user (cached in DIR/base-user-HASH/, HASH covering this script and
#     the versions of the host packages copied): merged-/usr root with bash,
#     busybox applets, coreutils, grep, sed, gawk, util-linux, dmsetup, fio,
#     kmod, e2fsprogs, procps, lvm2 (with thin_check & co.), ... and their
#     shared libraries; /etc/lvm/lvm.conf set up for a guest without udev,
#     lvmetad, lvmpolld or dmeventd (see write_lvm_conf).
#  2. base-modules-KVER (cached in DIR/base-modules-KVER-HASH/): the kernel
#     modules the tests need with dependencies, decompressed, depmod'ed.
#     They come from /lib/modules/KVER, or DIR/lib/modules/KVER with
#     --mod-root DIR (a kernel built by scripts/build-debug-kernel.sh, where
#     most of them are built in).
#  3. a small per-run archive: /init (scripts/guest-init.sh), the repo's
#     tools/testing/selftests/dm-cor/ and tools/dm-cor/ under /dm-cor/,
#     /dm-cor/scripts/{demo-guest,debug-kernel-check}.sh, the optional
#     module installed as /lib/modules/KVER/extra/dm-cor.ko (with a fresh
#     depmod), and the
#     contents of --extra DIR (vm-run.sh puts the command and env there).
# Per-run paths must be canonical (usr/lib/..., never lib/...): an entry for
# a directory "lib" would replace the /lib -> usr/lib symlink.
# --base-only builds the cached archives and prints their paths.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$SELF")")

die() { echo "mkinitramfs: error: $*" >&2; exit 1; }
log() { echo "mkinitramfs: $*" >&2; }

# Host packages whose programs go into the guest. Optional ones are used
# only when installed.
PKGS=(bash coreutils grep sed gawk diffutils findutils util-linux mount
	bsdextrautils dmsetup fio kmod e2fsprogs procps xz-utils
	lvm2 thin-provisioning-tools)
OPT_PKGS=(xfsprogs bsdutils)

# Kernel modules (plus dependencies); every drivers/md module is added too.
MODULES=(dm-mod dm-bufio dm-persistent-data dm-flakey dm-delay dm-log-writes
	dm-crypt dm-snapshot dm-zero dm-thin-pool
	brd null_blk loop nbd virtio_blk virtio_pci virtio_ring virtio
	ext4 xfs crc32c_generic crc32c-intel libcrc32c crc32c
	configfs)

kver='' out='' cache_dir="$REPO/build/vm" module='' extra='' base_only=0 modroot=''
while (($#)); do
	case $1 in
		--kver) kver=${2:?}; shift 2 ;;
		--out) out=${2:?}; shift 2 ;;
		--cache-dir) cache_dir=${2:?}; shift 2 ;;
		--module) module=${2:?}; shift 2 ;;
		--extra) extra=${2:?}; shift 2 ;;
		--base-only) base_only=1; shift ;;
		--mod-root) modroot=$(readlink -f "${2:?}"); shift 2 ;;
		-h|--help) sed -n '2,26p' "$SELF" | sed 's/^# \{0,1\}//'; exit 0 ;;
		*) die "unknown argument '$1' (try --help)" ;;
	esac
done
[[ -n $kver ]] || die "--kver is required"
((base_only)) || [[ -n $out ]] || die "--out is required"
if [[ -n $modroot ]]; then
	[[ -f $modroot/lib/modules/$kver/modules.builtin ]] ||
		die "no modules.builtin in $modroot/lib/modules/$kver"
else
	[[ -d /lib/modules/$kver/kernel ]] || die "no modules for kernel $kver in /lib/modules/$kver"
fi
# modprobe -S KVER with the --mod-root tree as its root
modprobe_k() { modprobe ${modroot:+-d "$modroot"} -S "$kver" "$@"; }
for t in cpio depmod modprobe ldd ldconfig xz busybox; do
	command -v "$t" >/dev/null || die "'$t' not found; run scripts/install-deps.sh"
done
[[ -z $module || -f $module ]] || die "module '$module' does not exist"
[[ -z $extra || -d $extra ]] || die "--extra '$extra' is not a directory"

# ---------------------------------------------------------------- helpers

declare -A CANON=()
# add_path ROOT PATH: copy PATH (file or symlink chain) into ROOT at the
# same canonical location, recreating symlinks as symlinks.
add_path() {
	local root=$1 p=$2 d b t
	d=${p%/*} b=${p##*/}
	d=${d:-/}
	[[ -n ${CANON[$d]+x} ]] || CANON[$d]=$(readlink -f "$d") || return 0
	d=${CANON[$d]}
	p=${d%/}/$b
	[[ -e $root$p || -L $root$p ]] && return 0
	[[ -d $root$d ]] || mkdir -p "$root$d"
	if [[ -L $p ]]; then
		t=$(readlink "$p")
		ln -s "$t" "$root$p"
		[[ $t == /* ]] || t=$d/$t
		add_path "$root" "$t"
	elif [[ -e $p ]]; then
		cp -p "$p" "$root$p"
	fi
}

is_elf() {
	local magic=''
	[[ -f $1 && -r $1 ]] || return 1
	LC_ALL=C read -r -N 4 magic <"$1" 2>/dev/null
	[[ $magic == $'\x7fELF' ]]
}

# add_libs ROOT FILE...: add the shared libraries (and loader) of ELF FILEs.
add_libs() {
	local root=$1 f lib
	local -a elves=()
	shift
	for f in "$@"; do
		is_elf "$f" && elves+=("$f")
	done
	((${#elves[@]})) || return 0
	{ ldd "${elves[@]}" 2>/dev/null || true; } | awk '
		$2 == "=>" && $3 ~ /^\// { print $3; next }
		NF == 2 && $1 ~ /^\// && $2 ~ /^\(0x/ { print $1 }' |
	sort -u | while read -r lib; do
		add_path "$root" "$lib"
	done
}

# pkg_versions: versions of the packages copied into the base (cache key).
pkg_versions() {
	dpkg-query -W -f='${Package}=${Version}\n' "${PKGS[@]}" "${OPT_PKGS[@]}" \
		busybox-static 2>/dev/null || true
}

# write_lvm_conf ROOT: /etc/lvm for the udev-less guest. Only what lvm2
# needs to run without udev, lvmpolld, lvmlockd and dmeventd is set;
# everything else (filters, devices file, hints, duplicate handling) stays
# at lvm2's compiled-in defaults, so tests see lvm2's default behaviour.
write_lvm_conf() {
	local root=$1 c
	mkdir -p "$root/etc/lvm/backup" "$root/etc/lvm/archive" "$root/etc/lvm/devices"
	[[ -d /etc/lvm/profile ]] && cp -a /etc/lvm/profile "$root/etc/lvm/"
	cat >"$root/etc/lvm/lvm.conf" <<-'EOF'
	# dm-cor test VM (scripts/mkinitramfs.sh): no udev, no lvm daemons.
	# Everything not set here is lvm2's default (lvmconfig --type default);
	# locking_dir (/run/lock/lvm) is created by lvm itself on the /run tmpfs.
	devices {
	    obtain_device_list_from_udev = 0
	}
	activation {
	    udev_sync = 0
	    udev_rules = 0
	    monitoring = 0
	}
	global {
	    use_lvmlockd = 0
	    use_lvmpolld = 0
	}
	EOF
	: >"$root/etc/lvm/lvmlocal.conf"
	# lvm2 2.03.16 packages no lvmdevices/vgimportdevices symlinks
	for c in lvmdevices vgimportdevices; do
		[[ -e $root/usr/sbin/$c ]] || ln -s lvm "$root/usr/sbin/$c"
	done
}

# ---------------------------------------------------------------- base

build_user() {
	local root=$1 p f name dir n=0
	local -a files=()

	# merged-/usr skeleton mirroring the host
	mkdir -p "$root"/{dev,proc,sys,tmp,run,root,etc,mnt,usr/bin,usr/sbin,usr/lib}
	for d in bin sbin lib lib64; do
		if [[ -L /$d ]]; then
			ln -s "$(readlink "/$d")" "$root/$d"
		else
			mkdir -p "$root/$d"
		fi
	done
	chmod 1777 "$root/tmp"
	mknod -m 600 "$root/dev/console" c 5 1
	mknod -m 666 "$root/dev/null" c 1 3

	# programs of the packages, with their libraries
	local -a pkgs=("${PKGS[@]}")
	for p in "${OPT_PKGS[@]}"; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' &&
			pkgs+=("$p")
	done
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' ||
			die "host package '$p' is not installed; run scripts/install-deps.sh"
		while read -r f; do
			[[ $f =~ ^(/usr)?/s?bin/[^/]+$ ]] || continue
			[[ -f $f || -L $f ]] || continue
			add_path "$root" "$f"
			files+=("$f")
		done < <(dpkg -L "$p")
	done
	add_libs "$root" "${files[@]}"

	# busybox applets for everything else (poweroff, stty fallback, ...)
	local bb
	bb=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -n1)
	[[ -n $bb ]] || die "busybox-static not installed"
	cp -p "$bb" "$root/usr/bin/busybox"
	while read -r f; do
		[[ $f == */* ]] || continue
		name=${f##*/}
		[[ -e $root/usr/bin/$name || -L $root/usr/bin/$name ||
			-e $root/usr/sbin/$name || -L $root/usr/sbin/$name ]] && continue
		case $f in
			*sbin/*) dir=usr/sbin ;;
			*) dir=usr/bin ;;
		esac
		ln -s /usr/bin/busybox "$root/$dir/$name"
		n=$((n + 1))
	done < <("$root/usr/bin/busybox" --list-full)
	log "base: ${#files[@]} programs, $n busybox applets"

	# /etc
	printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\ndisk:x:6:\nnogroup:x:65534:\n' >"$root/etc/group"
	echo dmcor-vm >"$root/etc/hostname"
	ln -s /proc/self/mounts "$root/etc/mtab"
	: >"$root/etc/fstab"
	[[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$root/etc/"
	write_lvm_conf "$root"
	printf '%s\n' /usr/local/lib /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu >"$root/etc/ld.so.conf"
	ldconfig -r "$root" || die "ldconfig -r $root failed"
}

# build_modules ROOT: ROOT/usr/lib/modules/KVER with the modules the tests
# need, decompressed and depmod'ed (ROOT/lib -> usr/lib for depmod -b).
build_modules() {
	local root=$1 f m rel n=0
	local src=$modroot/lib/modules/$kver dst=$root/usr/lib/modules/$kver
	mkdir -p "$dst"
	ln -s usr/lib "$root/lib"
	for f in modules.builtin modules.builtin.modinfo modules.order; do
		[[ -f $src/$f ]] && cp "$src/$f" "$dst/"
	done
	local -a names=("${MODULES[@]}")
	while read -r f; do
		f=${f##*/}; f=${f%%.ko*}
		names+=("$f")
	done < <([[ ! -d $src/kernel/drivers/md ]] || find "$src/kernel/drivers/md" -name '*.ko*')
	for m in "${names[@]}"; do
		if ! modprobe_k --show-depends "$m" >"$root/.deps" 2>/dev/null; then
			log "note: no module '$m' for $kver"
			continue
		fi
		awk '$1 == "insmod" { print $2 }' "$root/.deps"
	done | sort -u | while read -r f; do
		rel=${f#"$src"/}
		[[ $rel != "$f" ]] || die "unexpected module path $f"
		mkdir -p "$dst/$(dirname "$rel")"
		case $f in
			*.ko.xz) xz -dc "$f" >"$dst/${rel%.xz}" ;;
			*.ko.zst) zstd -qdc "$f" >"$dst/${rel%.zst}" ;;
			*.ko.gz) gzip -dc "$f" >"$dst/${rel%.gz}" ;;
			*) cp "$f" "$dst/$rel" ;;
		esac
	done
	# builtin ones (e.g. virtio_pci on 6.12) print "builtin X" and are fine
	for m in dm-mod virtio_blk ext4 loop; do
		modprobe_k --show-depends "$m" >/dev/null 2>&1 ||
			die "module $m not found for $kver"
	done
	rm -f "$root/.deps"
	depmod -b "$root" "$kver" || die "depmod failed"
	n=$(find "$dst" -name '*.ko' | wc -l)
	log "base: $n kernel modules for $kver"
}

mkcpio() { # DIR OUTFILE [SUBDIR]: newc archive of DIR (or of DIR/SUBDIR)
	(cd "$1" && find "${3:-.}" -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$2"
}

# cached_cpio NAME KEY BUILDFN [CPIO-SUBDIR]: print the path of the cached
# archive NAME-KEY/NAME.cpio, building it with BUILDFN if needed.
cached_cpio() {
	local name=$1 key=$2 fn=$3 sub=${4:-.} dir tmp t0=$SECONDS
	dir=$cache_dir/$name-$key
	mkdir -p "$cache_dir"
	exec 9>"$cache_dir/.$name.lock"
	flock 9
	if [[ ! -f $dir/$name.cpio ]]; then
		log "building $name (cached in $dir)"
		rm -rf "$cache_dir/$name-"*
		tmp=$(mktemp -d "$cache_dir/.$name.XXXXXX")
		# shellcheck disable=SC2064 # (runs in a $(...) subshell)
		trap "rm -rf '$tmp'" EXIT
		"$fn" "$tmp/root" >&2
		mkcpio "$tmp/root" "$tmp/$name.cpio" "$sub"
		mv "$tmp" "$dir"
		log "$name: $(du -h "$dir/$name.cpio" | cut -f1) in $((SECONDS - t0)) s"
	fi
	flock -u 9
	exec 9>&-
	echo "$dir"
}

self_hash=$(sha256sum "$SELF" | cut -c1-64)
user_key=$( { echo "$self_hash"; pkg_versions; } | sha256sum | cut -c1-16)
mod_key=$( {
	echo "$self_hash"
	stat -c %Y "$modroot/lib/modules/$kver/modules.dep"
} | sha256sum | cut -c1-16)
user=$(cached_cpio base-user "$user_key" build_user)
mods=$(cached_cpio "base-modules-$kver" "$mod_key" build_modules usr)
if ((base_only)); then
	echo "$user/base-user.cpio"
	echo "$mods/base-modules-$kver.cpio"
	exit 0
fi

# ---------------------------------------------------------------- per run

run=$(mktemp -d "${TMPDIR:-/tmp}/dmcor-initramfs.XXXXXX")
trap 'rm -rf "$run"' EXIT
r=$run/root
mkdir -p "$r/dm-cor/scripts"
install -m 755 "$REPO/scripts/guest-init.sh" "$r/init"
for f in demo-guest.sh debug-kernel-check.sh; do
	[[ -f $REPO/scripts/$f ]] && install -m 755 "$REPO/scripts/$f" "$r/dm-cor/scripts/"
done
for d in tools/testing/selftests/dm-cor tools/dm-cor; do
	if [[ -d $REPO/$d ]]; then
		mkdir -p "$r/dm-cor/$(dirname "$d")"
		cp -a "$REPO/$d" "$r/dm-cor/$d"
	fi
done
# libraries of any built helpers that the base lacks
mapfile -t elves < <(find "$r/dm-cor" -type f -perm -u+x)
libs=$run/libs
mkdir -p "$libs"
add_libs "$libs" "${elves[@]}"
(cd "$libs" && find . -type f -o -type l) | while read -r f; do
	f=${f#.}
	[[ -e $user/root$f || -L $user/root$f ]] && continue
	mkdir -p "$r$(dirname "$f")"
	cp -a "$libs$f" "$r$f"
	log "adding $f (needed by a helper binary)"
done

if [[ -n $module ]]; then
	mdir=usr/lib/modules/$kver
	t=$run/depmod
	mkdir -p "$t/usr/lib/modules"
	ln -s usr/lib "$t/lib"
	cp -al "$mods/root/$mdir" "$t/$mdir"
	rm -f "$t/$mdir"/modules.*.bin "$t/$mdir"/modules.{dep,alias,symbols,softdep,devname,weakdep}
	mkdir -p "$t/$mdir/extra"
	cp "$module" "$t/$mdir/extra/dm-cor.ko"
	depmod -b "$t" "$kver" || die "depmod with $module failed"
	mkdir -p "$r/$mdir/extra"
	cp "$module" "$r/$mdir/extra/dm-cor.ko"
	cp "$t/$mdir"/modules.* "$r/$mdir/"
	grep -q 'extra/dm-cor.ko:' "$t/$mdir/modules.dep" || die "depmod did not register dm-cor.ko"
	deps=$(grep '^extra/dm-cor.ko:' "$t/$mdir/modules.dep" | cut -d: -f2)
	log "module: $module -> /lib/modules/$kver/extra/dm-cor.ko (depends:${deps:- none})"
fi

if [[ -n $extra ]]; then
	cp -a "$extra/." "$r/"
fi

mkcpio "$r" "$run/run.cpio"
cat "$user/base-user.cpio" "$mods/base-modules-$kver.cpio" "$run/run.cpio" >"$out.tmp"
mv "$out.tmp" "$out"
