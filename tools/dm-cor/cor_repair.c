// SPDX-License-Identifier: GPL-2.0-only
/*
 * cor_repair: rebuild dm-cor metadata from a damaged copy, keeping what can
 * be trusted, into a new metadata device or file.
 *
 * What the bits mean decides what is safe (Documentation/.../dm-cor.rst):
 * a hydrated region is read from the destination, an unhydrated one from
 * the origin; a dirty region was written through the cor device, so only
 * the destination holds its data.  Bits are only ever set, and only after
 * the destination write they describe completed; a dirty bit always has
 * its hydrated bit.  Hence:
 *
 * - Marking a region hydrated that was not is never safe: its destination
 *   blocks hold whatever was there, and reads would return that.
 * - Marking a CLEAN region not hydrated is safe: the destination only held
 *   a copy of the origin, which is read (and copied) again.
 * - Marking a DIRTY region not hydrated loses its writes: reads return the
 *   origin's old data, and the next read copies the origin over the
 *   destination's newer data.  So "unknown hydrated => not hydrated" is
 *   only safe where the dirty bit is known to be clear.
 * - Marking a hydrated region dirty that was clean is safe: it only
 *   forgets that the destination still matches the origin.
 *
 * The repair therefore:
 *
 * 1. Takes the newest superblock with a valid checksum that passes every
 *    check the kernel makes (as the kernel does; a slot with a bad checksum
 *    is a torn write of a commit that never completed).  If a newer one
 *    with a valid checksum had to be rejected, the commits after the one
 *    used are lost: POSSIBLE DATA LOSS.  With none, the geometry is
 *    unknown and nothing is written (exit 3).
 * 2. Per bitmap block (32640 regions), takes the hydrated and the dirty
 *    block from the superblock's area when they pass the kernel's checks
 *    (checksum, kind, location, no bits past the end):
 *    - both valid: kept as they are; dirty regions that are not marked
 *      hydrated are marked hydrated (a dirty bit is trustworthy).
 *    - hydrated valid, dirty not: every hydrated region is marked dirty
 *      (safe).
 *    - dirty valid, hydrated not: only the dirty regions stay hydrated;
 *      clean ones are copied again (safe).
 *    - neither valid: the blocks of the other area are used where valid.
 *      They hold an older commit (or an interrupted newer one), whose set
 *      bits were true when it was made: regions it marks hydrated are kept
 *      hydrated and marked dirty.  Regions hydrated or written after it was
 *      made are lost: POSSIBLE DATA LOSS.
 *    - nothing valid in either area: every region of the block is marked
 *      not hydrated, the only choice that never shows garbage; any region
 *      that was dirty loses its data: POSSIBLE DATA LOSS.
 * 3. Writes a fresh image with both areas holding the result and two
 *    superblocks (generations G + 1 and G + 2, no flags, same uuid).
 *
 * Every give-up is printed on stderr with its region range.  Exit status:
 * 0 repaired, nothing given up; 4 repaired, only knowledge that holds no
 * data given up (clean regions to copy again, clean regions marked dirty);
 * 1 repaired, but regions may have lost data (listed); 2 usage or I/O
 * error, output too small, read-only or in use; 3 nothing trustworthy to
 * repair from, nothing written.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cor-meta.h"

enum fate {
	F_EXACT,
	F_FIXED,	/* dirty-but-not-hydrated regions marked hydrated */
	F_DIRTY_GUESSED,
	F_RECOPY,
	F_FALLBACK,
	F_LOST,
	NR_FATES
};

static const int fate_risky[NR_FATES] = { [F_FALLBACK] = 1, [F_LOST] = 1 };

static const char * const fate_text[NR_FATES] = {
	[F_FIXED] =
		"dirty regions not marked hydrated are marked hydrated (a dirty bit is set only after its write completed)",
	[F_DIRTY_GUESSED] =
		"the dirty bitmap block is damaged: every hydrated region is marked dirty (which of them were clean is forgotten)",
	[F_RECOPY] =
		"the hydrated bitmap block is damaged: only the dirty regions stay hydrated, clean ones will be copied from the origin again",
	[F_FALLBACK] =
		"both bitmap blocks are damaged: the other area's copy (an older or interrupted commit) is used, its hydrated regions marked dirty; regions hydrated or written since it was made read the origin again, their newer data is only on the destination",
	[F_LOST] =
		"no valid hydrated or dirty block in either area: every region is marked not hydrated; data written to any of them is only on the destination, reads return the origin's",
};

struct repair {
	struct cor_dev *in;
	struct cor_geom g;
	unsigned int area;	/* of the superblock used */
	__u64 generation;
	unsigned char *fate;	/* per bitmap block */
	__u64 *other[DM_COR_NR_BITMAPS];
	__u64 nr_hydrated, nr_dirty;
};

static bool quiet;

static void show_usage(FILE *f)
{
	fprintf(f,
		"usage: cor_repair [options] -i INPUT -o OUTPUT\n"
		"Rebuild dm-cor metadata from damaged metadata, keeping what can be trusted.\n"
		"INPUT is only read; OUTPUT (a spare device or an image file, created when it\n"
		"does not exist) receives a fresh image.\n\n"
		"  -i, --input DEV     the damaged metadata\n"
		"  -o, --output DEV    where the repaired metadata is written\n"
		"  -q, --quiet         print only what was given up\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version\n\n"
		"Exit status: 0 repaired, nothing given up; 4 repaired, only knowledge that\n"
		"holds no data given up; 1 repaired, but regions may have lost data (listed on\n"
		"stderr); 2 usage or I/O error, output too small, read-only or in use;\n"
		"3 nothing to repair from (no usable superblock), nothing written.\n");
}

static void reject(void *ctx, const char *fmt, ...) cor_printf(2, 3);
static void reject(void *ctx, const char *fmt, ...)
{
	const struct cor_sb *sb = ctx;
	char prefix[64];
	va_list ap;

	snprintf(prefix, sizeof(prefix), "superblock generation %llu rejected: ", sb->generation);
	va_start(ap, fmt);
	cor_vmsg(stderr, NULL, prefix, fmt, ap);
	va_end(ap);
}

static enum cor_blk_state read_block(struct repair *rp, unsigned int area, unsigned int kind,
				     __u64 index, __u64 *words)
{
	enum cor_blk_state st = cor_read_bitmap_block(rp->in, &rp->g, area, kind, index, words);

	if (st != COR_BLK_OK)
		cor_err("%s bitmap block %llu of area %u: %s", cor_bitmap_name(kind), index, area,
			cor_blk_state_name(st));
	return st;
}

static int fill_block(void *ctx, __u64 index, __u64 *h, __u64 *d)
{
	struct repair *rp = ctx;
	__u64 nbits = cor_block_nbits(&rp->g, index), w, *oh, *od;
	bool h_ok, d_ok, oh_ok, od_ok;
	enum fate fate = F_EXACT;

	h_ok = read_block(rp, rp->area, DM_COR_BITMAP_HYDRATED, index, h) == COR_BLK_OK;
	d_ok = read_block(rp, rp->area, DM_COR_BITMAP_DIRTY, index, d) == COR_BLK_OK;

	if (h_ok && d_ok) {
		for (w = 0; w < DM_COR_BITMAP_WORDS; w++) {
			if (d[w] & ~h[w]) {
				h[w] |= d[w];
				fate = F_FIXED;
			}
		}
	} else if (h_ok) {
		memcpy(d, h, DM_COR_BITMAP_WORDS * sizeof(*d));
		fate = F_DIRTY_GUESSED;
	} else if (d_ok) {
		memcpy(h, d, DM_COR_BITMAP_WORDS * sizeof(*h));
		fate = F_RECOPY;
	} else {
		oh = rp->other[DM_COR_BITMAP_HYDRATED];
		od = rp->other[DM_COR_BITMAP_DIRTY];
		oh_ok = read_block(rp, rp->area ^ 1, DM_COR_BITMAP_HYDRATED, index, oh) ==
			COR_BLK_OK;
		od_ok = read_block(rp, rp->area ^ 1, DM_COR_BITMAP_DIRTY, index, od) ==
			COR_BLK_OK;
		fate = oh_ok || od_ok ? F_FALLBACK : F_LOST;
		for (w = 0; w < DM_COR_BITMAP_WORDS; w++) {
			h[w] = (oh_ok ? oh[w] : 0) | (od_ok ? od[w] : 0);
			d[w] = h[w];
		}
	}
	/* cor_write_image() clears the bits past the end; count without them */
	rp->nr_hydrated += cor_count_bits(h, nbits);
	rp->nr_dirty += cor_count_bits(d, nbits);
	rp->fate[index] = fate;
	return 0;
}

/* Print the give-ups, merged over consecutive blocks; returns the worst */
static int report_fates(struct repair *rp)
{
	__u64 index, start = 0, first, last;
	int worst = 0;
	enum fate f;

	for (index = 1; index <= rp->g.bitmap_blocks; index++) {
		f = rp->fate[start];
		if (index < rp->g.bitmap_blocks && rp->fate[index] == f)
			continue;
		if (f != F_EXACT) {
			first = start * DM_COR_BITS_PER_BLOCK;
			last = index * DM_COR_BITS_PER_BLOCK;
			if (last > rp->g.nr_regions)
				last = rp->g.nr_regions;
			last--;
			cor_err("%s: regions %llu-%llu (sectors %llu-%llu): %s",
				fate_risky[f] ? "POSSIBLE DATA LOSS" : "given up, no data at risk",
				first, last, first * rp->g.region_sectors,
				(last + 1) * rp->g.region_sectors - 1, fate_text[f]);
			if (fate_risky[f])
				worst = 1;
			else if (!worst)
				worst = 4;
		}
		start = index;
	}
	return worst;
}

static int write_zero_superblocks(struct cor_dev *out)
{
	__u8 block[DM_COR_BLOCK_SIZE] = { 0 };

	if (out->created && cor_dev_set_size(out, DM_COR_NR_SUPERBLOCKS))
		return -1;
	if (out->nr_blocks < DM_COR_NR_SUPERBLOCKS) {
		cor_err("%s: too small for even the superblocks", out->path);
		return -1;
	}
	if (cor_dev_write(out, 0, block) || cor_dev_write(out, 1, block) || cor_dev_sync(out))
		return -1;
	return 0;
}

static int run_repair(struct cor_dev *in, struct cor_dev *out)
{
	const struct cor_sb *chosen = NULL;
	struct cor_sb sb[DM_COR_NR_SUPERBLOCKS];
	struct repair rp = { .in = in };
	int used[DM_COR_NR_SUPERBLOCKS] = { 1, 1 };
	int order[DM_COR_NR_SUPERBLOCKS], i, slot, lost_commits = 0, ret = 2, worst;
	struct cor_slots slots;
	size_t bytes = DM_COR_BITMAP_WORDS * sizeof(__u64);

	if (in->nr_blocks < DM_COR_NR_SUPERBLOCKS) {
		cor_err("%s is too small to hold dm-cor metadata (%llu bytes): nothing to repair from",
			in->path, in->size);
		return 3;
	}
	if (cor_read_slots(in, &slots))
		return 2;
	if (slots.state[0] == COR_SLOT_ZERO && slots.state[1] == COR_SLOT_ZERO) {
		cor_err("%s is all zeroes: not formatted yet; the output gets zeroed superblocks too",
			in->path);
		return write_zero_superblocks(out) ? 2 : 0;
	}
	for (slot = 0; slot < DM_COR_NR_SUPERBLOCKS; slot++)
		if (slots.state[slot] != COR_SLOT_VALID && slots.state[slot] != COR_SLOT_ZERO)
			cor_err("superblock slot %d: %s: ignored, as the kernel does", slot,
				cor_slot_state_name(slots.state[slot]));

	/* Valid slots, newest first (slot 0 first on a tie, as the kernel) */
	order[0] = 0;
	order[1] = 1;
	if (slots.sb[1].generation > slots.sb[0].generation) {
		order[0] = 1;
		order[1] = 0;
	}
	for (i = 0; i < DM_COR_NR_SUPERBLOCKS && !chosen; i++) {
		slot = order[i];
		if (slots.state[slot] != COR_SLOT_VALID)
			continue;
		if (!cor_sb_check(&slots.sb[slot], in->nr_blocks, &rp.g, reject, &slots.sb[slot]))
			chosen = &slots.sb[slot];
		else
			lost_commits = 1;
	}
	if (!chosen) {
		cor_err("no usable superblock: region size and length unknown, nothing written");
		return 3;
	}
	if (chosen->flags & DM_COR_SB_NEEDS_CHECK)
		cor_err("the needs-check flag was set: cleared, the last commit (generation %llu) kept",
			chosen->generation);
	if (lost_commits) {
		cor_err("POSSIBLE DATA LOSS: a newer superblock was rejected: generation %llu is used",
			chosen->generation);
		cor_err("POSSIBLE DATA LOSS: regions written after it read the origin's data again");
	}

	if (cor_dev_reserve(out, rp.g.nr_metadata_blocks))
		return 2;

	rp.area = chosen->active_area;
	rp.generation = chosen->generation > ~0ULL - 2 ? 0 : chosen->generation;
	rp.fate = calloc(rp.g.bitmap_blocks, 1);
	rp.other[0] = malloc(bytes);
	rp.other[1] = malloc(bytes);
	if (!rp.fate || !rp.other[0] || !rp.other[1]) {
		cor_err("out of memory");
		goto out;
	}
	/* Both areas the same, two superblocks: as the kernel formats */
	cor_sb_init(&sb[0], &rp.g, rp.generation + 1, 0, 0, chosen->uuid);
	cor_sb_init(&sb[1], &rp.g, rp.generation + 2, 1, 0, chosen->uuid);
	if (cor_write_image(out, &rp.g, sb, used, fill_block, &rp) || cor_dev_close(out))
		goto out;

	worst = report_fates(&rp);
	if (lost_commits)
		worst = 1;
	if (!quiet)
		printf("cor_repair: %s: generation %llu, %llu regions, %llu hydrated, %llu dirty\n",
		       out->path, rp.generation + 2, rp.g.nr_regions, rp.nr_hydrated, rp.nr_dirty);
	ret = worst;
out:
	free(rp.fate);
	free(rp.other[0]);
	free(rp.other[1]);
	return ret;
}

int main(int argc, char **argv)
{
	struct cor_io_args args;
	const char *input, *output;
	struct cor_dev in, out;
	struct stat si, so;
	int r;

	cor_prog = "cor_repair";
	if (cor_io_args(argc, argv, show_usage, "-i INPUT and -o OUTPUT", &args))
		return 2;
	input = args.input;
	output = args.output;
	quiet = args.quiet;

	if (cor_dev_open(&in, input, 0))
		return 2;
	/* before opening: a block device opened twice would look "in use" */
	if (!stat(input, &si) && !stat(output, &so) &&
	    (S_ISBLK(si.st_mode) ? S_ISBLK(so.st_mode) && si.st_rdev == so.st_rdev :
				   si.st_dev == so.st_dev && si.st_ino == so.st_ino)) {
		cor_err("%s and %s are the same: cor_repair writes a new copy, give it another output",
			input, output);
		return 2;
	}
	if (cor_dev_open(&out, output, COR_OPEN_CREATE))
		return 2;
	r = run_repair(&in, &out);
	if ((r == 2 || r == 3) && out.created)
		unlink(output);
	return r;
}
