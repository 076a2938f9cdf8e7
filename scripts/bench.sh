#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Run the dm-cor benchmarks in one VM session: tools/dm-cor/bench/
# bench-guest.sh (hydrated reads, cold-read latency) and
# bench-hydration-guest.sh (hydration throughput, foreground latency under
# hydration, in-core memory).
# usage: scripts/bench.sh [6.1|6.12] [all|core|hydration]   (default 6.12 all)
set -euo pipefail
cd "$(dirname "$0")/.."
k=${1:-6.12}
case ${2:-all} in
all) guest='tools/dm-cor/bench/bench-guest.sh && tools/dm-cor/bench/bench-hydration-guest.sh' ;;
core) guest=tools/dm-cor/bench/bench-guest.sh ;;
hydration) guest=tools/dm-cor/bench/bench-hydration-guest.sh ;;
*) echo "usage: $0 [6.1|6.12] [all|core|hydration]" >&2; exit 2 ;;
esac
scripts/install-deps.sh
kver=$(scripts/vm-run.sh --kernel "$k" --print-kver)
make -s KVER="$kver"
# BENCH_* variables (sizes, rounds, tunable sets) reach the guest scripts
envs=()
while IFS='=' read -r name _; do
	[[ $name =~ ^BENCH_[A-Za-z0-9_]*$ ]] && envs+=(--env "$name=${!name}")
done < <(env)
scripts/vm-run.sh --kernel "$kver" --module "build/$kver/dm-cor.ko" --out "build/vm/$kver-bench" \
	--mem 3072 --smp "${BENCH_SMP:-2}" "${envs[@]}" -- "$guest" </dev/null
