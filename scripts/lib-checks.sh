# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0-only
#
# lib-checks.sh: what scripts/package-test.sh and scripts/rootboot-test.sh
# share: one line per check (ok / FAILED), the count of failures, the
# kernels under test.  The caller sets CHECKS_NAME (for the summary line)
# and then sources this file.

t_start=$(date +%s)
failed=0

ok() { echo "ok      $*"; }
bad() { echo "FAILED  $*"; failed=$((failed + 1)); }
# the last line (the callers' EXIT traps print it, after their cleanup)
# shellcheck disable=SC2317
summary() { echo "$CHECKS_NAME: $failed failed ($(($(date +%s) - t_start)) s)"; }
finish() { exit $((failed > 0)); }

# resolve_kernels KERNEL...: kver_of[KERNEL]=uname -r (as vm-run.sh
# --kernel resolves it), or a FAILED line and exit
declare -A kver_of=()
resolve_kernels() {
	local k kver

	for k in "$@"; do
		kver=$(scripts/vm-run.sh --kernel "$k" --print-kver 2>/dev/null) || {
			bad "no kernel $k in /boot"
			finish
		}
		# shellcheck disable=SC2034	# the callers read it
		kver_of[$k]=$kver
	done
}
