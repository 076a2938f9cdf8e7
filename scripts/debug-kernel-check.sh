#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Debug-kernel reports (KASAN, lockdep, kmemleak, sleeping in atomic context,
# list corruption) in the dm-cor test VM.
#
# Usage:
#   scripts/debug-kernel-check.sh OUT|FILE...
#       host side: scan OUT/dmesg.txt and OUT/console.log of a vm-run.sh run
#       (or the given log files) for reports; print each one (deduplicated,
#       with its first lines) and exit 1 if there is any, 0 if none, 2 if
#       there is no log to read.  vm-run.sh --kernel-image runs this on its
#       run directory by itself.
#   scripts/debug-kernel-check.sh --scan
#       guest side (guest-init.sh runs it after the command when the kernel
#       has kmemleak): trigger a kmemleak scan and print the suspected leaks
#       on stdout and into the kernel log, where the host side finds them.
set -uo pipefail

# Start of a report (extended regex); the lines that follow it belong to it.
REPORT_RE='BUG: KASAN|WARNING: possible|inconsistent lock state|circular locking|'
REPORT_RE+='unreferenced object 0x|BUG: sleeping function called from invalid context|'
REPORT_RE+='BUG: scheduling while atomic|BUG: Invalid wait context|WARNING: bad unlock balance|'
REPORT_RE+='WARNING: suspicious RCU usage|BUG: held lock freed|BUG: workqueue leaked|'
REPORT_RE+='WARNING: held lock|BUG: MAX_LOCKDEP|list_(add|del) corruption|'
REPORT_RE+='kmemleak: [0-9]+ new suspected memory leaks'
CONTEXT=40	# lines printed per report

if [[ ${1:-} == --scan ]]; then
	f=/sys/kernel/debug/kmemleak
	if [[ ! -w $f ]]; then
		echo "dm-cor-vm: no $f (kernel without kmemleak): no scan"
		exit 0
	fi
	# Objects younger than 5 s are never reported: let the last test's settle.
	sync
	sleep 5
	# Two scans: an object must stay unreferenced across both to be listed.
	echo scan >"$f" && echo scan >"$f" || { echo "dm-cor-vm: kmemleak scan failed"; exit 1; }
	leaks=$(cat "$f")
	n=$(grep -c '^unreferenced object' <<<"$leaks")
	echo "dm-cor-vm: kmemleak scan done: $n unreferenced objects"
	if ((n)); then
		echo "$leaks"
		# into the kernel log too, one line per write (host side reads dmesg.txt)
		while IFS= read -r line; do
			echo "kmemleak-report: $line" >/dev/kmsg
		done <<<"$leaks"
	fi
	exit 0
fi

(($#)) || { sed -n '4,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
files=()
for a in "$@"; do
	if [[ -d $a ]]; then
		for f in "$a/dmesg.txt" "$a/console.log"; do
			[[ -f $f ]] && files+=("$f")
		done
	elif [[ -f $a ]]; then
		files+=("$a")
	fi
done
((${#files[@]})) || { echo "debug-kernel-check: no log in $*" >&2; exit 2; }

# Print each distinct report once: the first line (without timestamps and
# addresses) is the dedup key.
found=$(for f in "${files[@]}"; do tr -d '\r' <"$f"; done | awk -v re="$REPORT_RE" -v ctx="$CONTEXT" '
	function key(s) {
		sub(/^\[ *[0-9.]+\] /, "", s); sub(/^kmemleak-report: /, "", s)
		gsub(/0x[0-9a-f]+/, "0x", s); gsub(/[0-9]+/, "N", s)
		return s
	}
	$0 ~ re {
		k = key($0)
		if (k in seen) { seen[k]++; left = 0; next }
		seen[k] = 1; n++; first[n] = k
		print "--- report " n ": " $0
		left = ctx
		next
	}
	left > 0 {
		print "    " $0; left--
		if ($0 ~ /---\[ end trace|={40}/) left = 0
	}
	END {
		for (i = 1; i <= n; i++)
			printf "--- report %d seen %d time(s)\n", i, seen[first[i]]
		if (n) printf "debug-kernel-check: %d distinct report(s)\n", n
	}')
mark_seen=0
for f in "${files[@]}"; do
	grep -q 'kmemleak scan done' "$f" && mark_seen=1
done
if grep -qs 'kmemleak: Kernel memory leak detector initialized' "${files[@]}" && ((!mark_seen)); then
	echo "debug-kernel-check: warning: kmemleak is on but no scan ran (the guest did not reach the end?)" >&2
fi
if [[ -n $found ]]; then
	echo "debug-kernel-check: FAILED: debug-kernel reports in ${files[*]}:"
	echo "$found"
	exit 1
fi
echo "debug-kernel-check: no KASAN, lockdep, kmemleak or atomic-sleep reports in ${files[*]}"
exit 0
