#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The Debian packages from end to end, as CI runs them: build dm-cor-dkms
# and dm-cor-tools (make deb), lintian (any E: or W: fails), install both
# on this machine with apt, check that DKMS built, signed and installed the
# module for each kernel, boot each kernel in a VM with the module DKMS
# built and run tools/testing/selftests/dm-cor/smoke_package.sh there (the
# VMs side by side), check the installed tools, boot a root filesystem on
# a cor device through initramfs-tools and the installed hook
# (scripts/rootboot-test.sh), then purge both packages
# and check that DKMS removed the modules.  Prints one line per check and
# exits non-zero if any failed.  Needs root; refuses to run when a dm-cor
# package is installed already (it would be purged).  Leaves the machine
# as it found it, also when interrupted: the packages are purged, and the
# DKMS signing key (/var/lib/dkms/mok.key, mok.pub) is removed again if
# this run's install created it.  Logs in build/package-test/.
#
# usage: scripts/package-test.sh [KERNEL...]     (default: 6.1 6.12)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
logs=build/package-test
debs=build/deb
CHECKS_NAME="package test"
# shellcheck source=scripts/lib-checks.sh
. scripts/lib-checks.sh


# installed PKG: dpkg knows PKG in any state but "not installed"
installed() {
	local st

	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st:1:1}" != n ]
}

# ---------------------------------------------------------------- setup
[ "$(id -u)" -eq 0 ] || { bad "must run as root (installs packages)"; finish; }
for p in dm-cor-dkms dm-cor-tools; do
	if installed "$p"; then
		bad "$p is installed already: purge it first (this test installs and purges it)"
		finish
	fi
done
if [ -n "$(dkms status -m dm-cor 2>/dev/null)" ]; then
	bad "dm-cor is in the DKMS tree already (dkms status -m dm-cor): remove it first"
	finish
fi
resolve_kernels "${kernels[@]}"
rm -rf "$logs"
mkdir -p "$logs"

# The DKMS signing key and certificate (framework.conf may name others)
mok_key=/var/lib/dkms/mok.key mok_cert=/var/lib/dkms/mok.pub
# conf_value NAME: the last NAME=VALUE of the dkms framework files (unquoted)
conf_value() {
	cat /etc/dkms/framework.conf /etc/dkms/framework.conf.d/*.conf 2>/dev/null |
		sed -n "s/^[[:space:]]*$1=[\"']\{0,1\}\([^\"']*\).*/\1/p" | tail -n 1 || true
}
v=$(conf_value mok_signing_key)
[ -z "$v" ] || mok_key=$v
v=$(conf_value mok_certificate)
[ -z "$v" ] || mok_cert=$v
had_mok=0
if [ -e "$mok_key" ] || [ -e "$mok_cert" ]; then
	had_mok=1
fi

purged=1
declare -A vm_pid=()
# shellcheck disable=SC2317	# run by the EXIT trap
cleanup() {
	local p

	for p in "${vm_pid[@]}"; do	# vm-run.sh stops its VM on TERM
		# not an && list ending in wait: under set -e a VM that exits
		# non-zero on TERM would end the cleanup before the purge
		if kill -TERM "$p" 2>/dev/null; then
			wait "$p" 2>/dev/null || true
		fi
	done
	if [ "$purged" = 0 ]; then
		echo "(cleanup: purging the packages)"
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -q dm-cor-dkms dm-cor-tools \
			</dev/null >>"$logs/purge.log" 2>&1 || true
	fi
	if [ "$had_mok" = 0 ] && [[ $mok_key == /var/lib/dkms/* ]]; then
		for p in "$mok_key" "$mok_cert"; do
			if [ -e "$p" ]; then
				rm -f "$p"
				echo "(removed $p, which this run's DKMS build created)"
			fi
		done
	fi
	return 0
}
trap 'cleanup; summary' EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------- build
t0=$(date +%s)
if make deb >"$logs/deb.log" 2>&1; then
	ok "make deb ($(($(date +%s) - t0)) s): $(cd "$debs" && echo *.deb)"
else
	why=$(grep -E 'error|cannot|^not ok' "$logs/deb.log" | head -n 3 ||
		tail -n 5 "$logs/deb.log")
	bad "make deb: $(echo "$why" | tr '\n' ' ')(log: $logs/deb.log)"
	finish
fi
dkms_deb=$(ls "$debs"/dm-cor-dkms_*_all.deb)
tools_deb=$(ls "$debs"/dm-cor-tools_*.deb)
version=$(dpkg-deb -f "$dkms_deb" Version)
[ "$(dpkg-deb -f "$tools_deb" Version)" = "$version" ] ||
	bad "the two packages have different versions"

# -I --pedantic: every tag is listed in the log; only E: and W: fail
if lintian --fail-on error,warning -I --pedantic --tag-display-limit 0 \
	"$dkms_deb" "$tools_deb" >"$logs/lintian.txt" 2>&1; then
	n=$(grep -cE '^[IPX]: ' "$logs/lintian.txt" || true)
	ok "lintian: no E: or W: ($n I:/P:/X: tags, $logs/lintian.txt)"
else
	bad "lintian: $(grep -E '^[EW]: ' "$logs/lintian.txt" | head -n 5 | tr '\n' ' ')"
fi

# The tools package holds what "make install" installs (compressed or not)
dest=$top/$logs/make-install
if make -s -C tools/dm-cor install DESTDIR="$dest" PREFIX=/usr SBINDIR=/usr/sbin \
	>"$logs/make-install.log" 2>&1; then
	missing=$(comm -23 <(cd "$dest" && find . ! -type d | sed 's/\.gz$//' | sort) \
		<(dpkg-deb -c "$tools_deb" | awk '{ print $6 }' | sed 's/\.gz$//' | sort))
	n=$(find "$dest" ! -type d | wc -l)
	if [ "$n" -eq 0 ]; then
		bad "make -C tools/dm-cor install DESTDIR=$dest installed nothing"
	elif [ -z "$missing" ]; then
		ok "dm-cor-tools holds every file make install installs ($n)"
	else
		bad "dm-cor-tools lacks what make install installs: $(echo "$missing" | xargs)"
	fi
else
	bad "make -C tools/dm-cor install: $(tail -n 5 "$logs/make-install.log" | tr '\n' ' ')"
fi
rm -rf "$dest"

# ---------------------------------------------------------------- install
t0=$(date +%s)
purged=0
if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	"./$dkms_deb" "./$tools_deb" </dev/null >"$logs/install.log" 2>&1; then
	ok "apt-get install of both packages ($(($(date +%s) - t0)) s)"
else
	bad "apt-get install: $(tail -n 10 "$logs/install.log" | tr '\n' ' ')"
	finish
fi

# DKMS built and installed the module for each kernel, signed with its key
mok_serial=$(openssl x509 -inform DER -in "$mok_cert" -noout -serial 2>/dev/null ||
	openssl x509 -in "$mok_cert" -noout -serial 2>/dev/null || true)
mok_serial=${mok_serial#serial=}
declare -A ko_of=()
for k in "${kernels[@]}"; do
	kver=${kver_of[$k]}
	st=$(dkms status -m dm-cor -v "$version" -k "$kver" 2>/dev/null || true)
	# dkms 3.0 builds at install for the running and the newest kernel
	# only (all of them when the running one is not installed): a kernel
	# it skipped is built the way an admin would, with dkms install
	if [[ $st != *": installed"* ]] &&
	   dkms install "dm-cor/$version" -k "$kver" >>"$logs/dkms-install.log" 2>&1; then
		echo "note    DKMS skipped $kver at install; built with dkms install -k $kver"
		st=$(dkms status -m dm-cor -v "$version" -k "$kver" 2>/dev/null || true)
	fi
	if [[ $st == *": installed"* ]]; then
		ok "dkms status on $kver: $st"
	else
		bad "dkms status on $kver: '${st:-nothing}'"
		continue
	fi
	ko=$(modinfo -k "$kver" -n dm-cor 2>&1) || ko=
	if [[ $ko != /lib/modules/$kver/updates/dkms/dm-cor.ko* || ! -f $ko ]]; then
		bad "modinfo -k $kver -n dm-cor: '$ko', not DKMS's module"
		continue
	fi
	vm=$(modinfo -F vermagic "$ko" | awk '{ print $1 }')
	key=$(modinfo -F sig_key "$ko" | tr -d ':\n')
	if [ "$vm" != "$kver" ]; then
		bad "$ko: vermagic $vm"
	elif [ -z "$key" ] || [ "$key" != "$mok_serial" ]; then
		bad "$ko: signed by '${key:-nobody}', not DKMS's key ($mok_cert: ${mok_serial:-?})"
	else
		ok "$ko: vermagic $vm, signed with DKMS's key ($mok_cert)"
	fi
	# the VM gets the module uncompressed, as vm-run.sh installs it
	case $ko in
	*.xz) xz -dc "$ko" ;;
	*.zst) zstd -qdc "$ko" ;;
	*.gz) gzip -dc "$ko" ;;
	*) cat "$ko" ;;
	esac >"$logs/dm-cor-$kver.ko"
	ko_of[$k]=$logs/dm-cor-$kver.ko
done

# ---------------------------------------------------------------- VMs
# The selftest helpers and tools the guest's smoke test uses (lib.sh)
make -s tools >"$logs/tools.log" 2>&1 ||
	bad "make tools: $(tail -n 5 "$logs/tools.log" | tr '\n' ' ')"
for k in "${!ko_of[@]}"; do
	kver=${kver_of[$k]}
	sum=$(sha256sum "${ko_of[$k]}" | awk '{ print $1 }')
	scripts/vm-run.sh --kernel "$kver" --module "${ko_of[$k]}" \
		--out "build/vm/$kver-package" --timeout 600 --smp 1 --mem 1024 \
		--env COR_SMOKE_MODULE_SHA256="$sum" \
		-- tools/testing/selftests/dm-cor/smoke_package.sh \
		</dev/null >"$logs/vm-$kver.log" 2>&1 &
	vm_pid[$k]=$!
done
for k in "${kernels[@]}"; do
	[ -n "${vm_pid[$k]:-}" ] || continue
	kver=${kver_of[$k]}
	rc=0
	wait "${vm_pid[$k]}" || rc=$?
	sed -i 's/\r$//' "$logs/vm-$kver.log"	# the guest console's line ends
	totals=$(grep -m 1 '^# Totals:' "$logs/vm-$kver.log" || true)
	secs=$(sed -n 's/^vm-run: boot+run took \([0-9.]*\)s.*/\1/p' "$logs/vm-$kver.log")
	if [ $rc -eq 0 ] && grep -qx PASS "$logs/vm-$kver.log"; then
		ok "VM smoke test on $kver with DKMS's module (${secs:-?} s): ${totals#\# }"
	else
		why=$(grep -E '^not ok|^Bail|^FAIL|vm-run: (error|FAILED)' "$logs/vm-$kver.log" |
			head -n 5 | tr '\n' ' ')
		bad "VM smoke test on $kver (exit $rc): $why(log: $logs/vm-$kver.log)"
	fi
done

# ---------------------------------------------------------------- tools
# the tools' own versions are the package's
for t in corctl cor_check; do
	if out=$(/usr/sbin/$t --version 2>&1) && [[ $out == "$t $version "* ]]; then
		ok "/usr/sbin/$t --version: $out"
	else
		bad "/usr/sbin/$t --version: '$out', expected $t $version"
	fi
done
if /usr/sbin/cor_check --help >"$logs/cor_check-help.txt" 2>&1 &&
	grep -qi usage "$logs/cor_check-help.txt"; then
	ok "/usr/sbin/cor_check --help"
else
	bad "/usr/sbin/cor_check --help: $(head -n 3 "$logs/cor_check-help.txt" | tr '\n' ' ')"
fi
if COR_TOOLS_DIR=/usr/sbin tools/dm-cor/tests/test_tools.sh >"$logs/test_tools.log" 2>&1; then
	ok "CLI contract of the installed tools ($(grep -c '^ok ' "$logs/test_tools.log") subtests)"
else
	bad "CLI contract of the installed tools: $(grep -E '^not ok|^Bail' "$logs/test_tools.log" |
		head -n 5 | tr '\n' ' ')"
fi
# every man page the package has (cortab(5) among them once it is there)
pages=$(dpkg -L dm-cor-tools |
	sed -n 's|^/usr/share/man/man\([0-9]\)/\([^/]*\)\.[0-9]\.gz$|\1 \2|p')
if ! command -v man >/dev/null; then
	echo "(no man command: the man pages are not looked up)"
	pages=
fi
while read -r sec page; do
	[ -n "$page" ] || continue
	if out=$(man -w "$sec" "$page" 2>&1); then
		ok "man -w $sec $page: $out"
	else
		bad "man -w $sec $page: $out"
	fi
done <<<"$pages"

# ---------------------------------------------------------------- root on cor
# Debian's initramfs with the installed hook boots root=/dev/mapper/vmroot
# (its own lines; its FAILED lines count here)
rb_rc=0
scripts/rootboot-test.sh "${kver_of[@]}" </dev/null >"$logs/rootboot.log" 2>&1 || rb_rc=$?
grep -E '^(ok |FAILED |  )' "$logs/rootboot.log" || true	# with a console tail
n=$(grep -c '^FAILED ' "$logs/rootboot.log" || true)
failed=$((failed + n))
if [ "$rb_rc" -ne 0 ] && [ "$n" -eq 0 ]; then
	bad "scripts/rootboot-test.sh exited $rb_rc (log: $logs/rootboot.log)"
fi

# ---------------------------------------------------------------- purge
t0=$(date +%s)
if DEBIAN_FRONTEND=noninteractive apt-get purge -y -q dm-cor-dkms dm-cor-tools \
	</dev/null >"$logs/purge.log" 2>&1; then
	purged=1
	ok "apt-get purge of both packages ($(($(date +%s) - t0)) s)"
else
	bad "apt-get purge: $(tail -n 10 "$logs/purge.log" | tr '\n' ' ')"
fi
left=()
for p in dm-cor-dkms dm-cor-tools; do
	if installed "$p"; then left+=("package $p"); fi
done
[ -z "$(dkms status -m dm-cor 2>/dev/null)" ] || left+=("dkms status -m dm-cor")
for k in "${kernels[@]}"; do
	kver=${kver_of[$k]}
	for f in /lib/modules/"$kver"/updates/dkms/dm-cor.ko*; do
		if [ -e "$f" ]; then left+=("$f"); fi
	done
	if ko=$(modinfo -k "$kver" -n dm-cor 2>/dev/null); then
		left+=("modinfo -k $kver finds $ko")
	fi
done
for f in "/usr/src/dm-cor-$version" /var/lib/dkms/dm-cor /usr/sbin/corctl /usr/sbin/cor_check; do
	if [ -e "$f" ]; then left+=("$f"); fi
done
if [ ${#left[@]} -eq 0 ]; then
	ok "after the purge: no package, no DKMS tree, no module for ${kernels[*]}"
else
	bad "left after the purge: ${left[*]}"
fi

finish
