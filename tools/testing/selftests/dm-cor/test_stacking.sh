#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# test_stacking.sh: cor over cor, with REQ_WRITE_UNCHANGED.
#
# An encrypted image E is the origin of a lower cor device L.  An upper cor
# device U presents the plaintext: its origin is dm-crypt over E, and its
# destination is dm-crypt over dm-linear over L, with the same key.  U's
# copies write plaintext that dm-crypt turns into exactly the ciphertext L
# already presents, so they are unchanged writes: dm-crypt and dm-linear
# keep the flag, L counts them in unchanged_writes and marks the regions
# hydrated and CLEAN (a copy that cost L no origin read), never DIRTY.  A
# user write to U, in contrast, makes L's region DIRTY.  Data is checked at
# every level.  (The other stacking case, one read-only volatile cor device
# shared as the origin of two cor devices, is in test_readonly.sh.)
#
# Needs a kernel with REQ_WRITE_UNCHANGED (the patch series): skipped with
# a reason on Debian's stock kernels.

. "$(dirname "$0")/lib.sh"

cor_test_init

SEED=$((RANDOM * 32768 + RANDOM))
REGION=64			# sectors (32 KiB)
BPR=$((REGION / 8))
KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')

flag_support=$(cat /sys/module/dm_cor/parameters/req_write_unchanged 2>/dev/null)
msg="kernel has no REQ_WRITE_UNCHANGED"
msg+=" (dm_cor.req_write_unchanged=${flag_support:-?}); needs the patch series"
[ "$flag_support" == Y ] || ktap_skip_all "$msg"
modprobe dm-crypt 2>/dev/null
ktap_plan 2

slice_create enc 0 16M && slice_create ldest 1 16M && slice_create lmeta 2 1M &&
slice_create umeta 2 1M || cor_bail "cannot create the test devices"
ENC=$(dm_path enc)
N=$(dev_sectors "$ENC")
TOTAL=$((N / REGION))
for m in lmeta umeta; do
	zero_dev "$(dm_path $m)" || cor_bail "cannot zero $m"
done

crypt_table() { echo "0 $N crypt aes-xts-plain64 $KEY 0 $1 0"; }

# the plaintext pattern, written through dm-crypt: E holds its ciphertext
dm_create plain0 "$(crypt_table "$ENC")" ||
	cor_bail "cannot create dm-crypt over the image: $COR_LAST_OUTPUT"
PLAIN0=$(dm_path plain0)
out=$("$COR_PATTERN" stamp "$PLAIN0" 0 all "$SEED" --quiet 2>&1) || cor_bail "stamping: $out"
# from now on the image is only read
COR_ORIGIN_SUMS[$ENC]=$(origin_checksum "$ENC")

cor_create lower "$ENC" "$(dm_path ldest)" "$(dm_path lmeta)" "$REGION" ||
	cor_bail "cannot create the lower cor device: $COR_LAST_OUTPUT"
dm_create lin "0 $N linear $(dm_path lower) 0" &&
dm_create plain1 "$(crypt_table "$(dm_path lin)")" ||
	cor_bail "cannot stack dm-linear and dm-crypt over the lower device: $COR_LAST_OUTPUT"
cor_create upper "$PLAIN0" "$(dm_path plain1)" "$(dm_path umeta)" "$REGION" ||
	cor_bail "cannot create the upper cor device: $COR_LAST_OUTPUT"
UPPER=$(dm_path upper)
LOWER=$(dm_path lower)

st_unchanged_copies()
{
	local u

	# regions 0-99 of the upper device: its copies go down the stack
	expect_ok "upper regions 0-99 read back the plaintext" \
		"$COR_PATTERN" verify "$UPPER" 0 $((100 * BPR)) "$SEED" || return
	wait_hydrated upper 100 && wait_status upper hydrating -eq 0 ||
		{ fail "the upper device did not copy regions 0-99"; return 1; }
	wait_hydrated lower 100 && wait_status lower hydrating -eq 0 ||
		{ fail "the lower device did not take the copies as hydrated regions"; return 1; }
	u=$(cor_status_field lower unchanged_writes)
	expect_cmp "$u" -ge 100 "unchanged writes the lower device received" || return
	expect_eq "$(cor_bitmap lower hydrated 0 "$TOTAL")" "0-99" "lower hydrated bitmap" || return
	expect_eq "$(cor_bitmap lower dirty 0 "$TOTAL")" "" "lower dirty bitmap" || return
	expect_eq "$(cor_status_fields lower dirty copies_done origin_read_sectors)" "0 0 0" \
		"lower dirty copies_done origin_read_sectors (the copies cost it nothing)" || return
	# every level shows the right data
	expect_ok "plaintext through the stack over the lower device" \
		"$COR_PATTERN" verify "$(dm_path plain1)" 0 all "$SEED" &&
	expect_eq "$(origin_checksum "$LOWER")" "${COR_ORIGIN_SUMS[$ENC]}" \
		"lower device checksum" &&
	expect_ok "upper device, all of it" "$COR_PATTERN" verify "$UPPER" 0 all "$SEED" || return
	ktap_diag "lower: $(cor_status lower)"
}

st_user_writes()
{
	local data=$COR_TMP/data model=$COR_TMP/model

	"$COR_PATTERN" gen 0 16 $((SEED + 1)) --pattern-version 1 >"$data" &&
	"$COR_PATTERN" gen 0 $((N / 8)) "$SEED" >"$model" ||
		{ fail "cannot build the data"; return 1; }
	# a user write to regions 10 (hydrated below) and 200 (not): both DIRTY
	dd_write "$data" 0 "$UPPER" $((10 * REGION + 8)) 8 &&
	dd_write "$data" 8 "$UPPER" $((200 * REGION)) 8 || { fail "user writes failed"; return 1; }
	model_write "$model" "$data" 0 $((10 * REGION + 8)) 8
	model_write "$model" "$data" 8 $((200 * REGION)) 8
	sync
	wait_status lower dirty -ge 2 ||
		{ fail "user writes did not make the lower regions dirty"; return 1; }
	expect_eq "$(cor_bitmap lower dirty 0 "$TOTAL")" "10 200" "lower dirty bitmap" || return
	expect_eq "$(cor_bitmap upper dirty 0 "$TOTAL")" "10 200" "upper dirty bitmap" || return
	expect_dev_matches_file "upper device after the writes" "$UPPER" 0 "$N" "$model"
}

run_subtest "copies down a dm-crypt/dm-linear stack are unchanged writes: lower stays CLEAN" \
	st_unchanged_copies
run_subtest "user writes through the stack make both levels DIRTY" st_user_writes

# take the stack down from the top (the epilogue then checks both metadata)
cor_remove upper && dm_remove plain1 && dm_remove lin && cor_remove lower &&
	dm_remove plain0 || ktap_diag "stack teardown: $COR_LAST_OUTPUT"

cor_test_done
