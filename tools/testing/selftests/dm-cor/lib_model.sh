# SPDX-License-Identifier: GPL-2.0
#
# lib_model.sh: region-set and status helpers shared by test_race.sh and
# test_reload.sh (sourced after lib.sh).  Few processes: each one is slow
# in the test VM.

# awk: print the keys of A (numbers 0..max) as normalised ranges
AWK_RANGES_OUT='
function print_ranges(A, max,   i, s, out) {
	out = ""; s = -1
	for (i = 0; i <= max + 1; i++) {
		if ((i in A) && s < 0)
			s = i
		else if (!(i in A) && s >= 0) {
			out = out (out == "" ? "" : " ") (s == i - 1 ? s : s "-" (i - 1))
			s = -1
		}
	}
	print out
}'

# ranges norm|union|minus A [B]: A, A plus B, A without B, as "a-b c"
ranges()
{
	awk -v op="$1" -v a="$2" -v b="$3" "$AWK_RANGES_OUT"'
	function add(s, arr,   n, i, w, p, k) {
		n = split(s, w, " ")
		for (i = 1; i <= n; i++) {
			if (split(w[i], p, "-") == 2) {
				for (k = p[1] + 0; k <= p[2] + 0; k++)
					arr[k] = 1
				if (p[2] + 0 > max)
					max = p[2] + 0
			} else {
				arr[w[i] + 0] = 1
				if (w[i] + 0 > max)
					max = w[i] + 0
			}
		}
	}
	BEGIN {
		max = -1
		add(a, A)
		if (op == "union")
			add(b, A)
		if (op == "minus") {
			add(b, B)
			for (k in B)
				delete A[k]
		}
		print_ranges(A, max)
	}'
}

# count_of "0-3 7": 5
count_of()
{
	local n=0 r

	for r in $1; do
		if [[ "$r" == *-* ]]; then
			n=$((n + ${r#*-} - ${r%-*} + 1))
		else
			n=$((n + 1))
		fi
	done
	echo "$n"
}

# model_regions MODEL BLOCKS_PER_REGION: regions holding a written block
model_regions()
{
	awk -v bpr="$2" "$AWK_RANGES_OUT"'
	BEGIN { max = -1 }
	$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ {
		r = int($1 / bpr)
		A[r] = 1
		if (r > max)
			max = r
	}
	END { print_ranges(A, max) }' "$1"
}

# st_read NAME: one "dmsetup status" into ST_HYDRATED ST_HYDRATING ST_DIRTY
# ST_MODE ST_COPIES_FAILED ST_LINE (see the status format in dm-cor.rst)
st_read()
{
	local f i

	read -ra f <<<"$(dmsetup status "$(dm_name "$1")" 2>/dev/null)"
	[ "${f[2]}" == cor ] || return 1
	ST_HYDRATED=${f[6]%/*} ST_HYDRATING=${f[7]}
	ST_DIRTY=${f[8]} ST_MODE=${f[9]} ST_COPIES_FAILED='?'
	for ((i = 10; i + 1 < ${#f[@]}; i++)); do
		[ "${f[i]}" == copies_failed ] && ST_COPIES_FAILED=${f[i + 1]}
	done
	ST_LINE=${f[*]}
	return 0
}

# wait_idle NAME: poll until no copy is in flight (bounded)
wait_idle()
{
	local end=$((SECONDS + COR_WAIT_TIMEOUT))

	while st_read "$1"; do
		[ "$ST_HYDRATING" == 0 ] && return 0
		[ $SECONDS -lt $end ] || break
		sleep 0.1
	done
	fail "copies still in flight after ${COR_WAIT_TIMEOUT}s: $ST_LINE"
	return 1
}
