#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Run the dm-cor benchmarks (tools/dm-cor/bench/bench-guest.sh) in one VM.
# usage: scripts/bench.sh [6.1|6.12]     (default 6.12)
set -euo pipefail
cd "$(dirname "$0")/.."
k=${1:-6.12}
scripts/install-deps.sh
kver=$(scripts/vm-run.sh --kernel "$k" --print-kver)
make -s KVER="$kver"
scripts/vm-run.sh --kernel "$kver" --module "build/$kver/dm-cor.ko" --out "build/vm/$kver-bench" \
	--mem 3072 -- tools/dm-cor/bench/bench-guest.sh </dev/null
