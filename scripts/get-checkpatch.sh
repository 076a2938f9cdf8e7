#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Print the path of checkpatch.pl from Debian's linux-source-6.12, extracting
# only the files checkpatch needs into ~/.cache/dm-cor on first use.
set -euo pipefail

for c in /usr/src/linux-source-6.12/scripts/checkpatch.pl \
	 "${HOME:-/root}/.cache/dm-cor/linux-source-6.12/scripts/checkpatch.pl"; do
	[ -x "$c" ] && { echo "$c"; exit 0; }
done

tarball=/usr/src/linux-source-6.12.tar.xz
[ -f "$tarball" ] || { echo "missing $tarball (apt-get install linux-source-6.12)" >&2; exit 1; }
dest="${HOME:-/root}/.cache/dm-cor"
mkdir -p "$dest"
tar -C "$dest" -xJf "$tarball" \
	linux-source-6.12/scripts/checkpatch.pl \
	linux-source-6.12/scripts/spelling.txt \
	linux-source-6.12/scripts/const_structs.checkpatch
echo "$dest/linux-source-6.12/scripts/checkpatch.pl"
