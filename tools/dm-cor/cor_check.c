// SPDX-License-Identifier: GPL-2.0-only
/*
 * cor_check: verify dm-cor metadata offline, the way the kernel checks it
 * when it loads a table; optionally clear the needs-check flag.
 *
 * Exit status: 0 clean (or all-zero: not formatted yet), 1 damaged, 2 usage
 * or I/O error, or the device is in use.  See man/cor_check.8.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cor-meta.h"

static int nr_problems;
static bool quiet;

static void problem(void *ctx, const char *fmt, ...) cor_printf(2, 3);
static void problem(void *ctx, const char *fmt, ...)
{
	va_list ap;

	(void)ctx;
	nr_problems++;
	va_start(ap, fmt);
	cor_vmsg(stdout, NULL, "damaged: ", fmt, ap);
	va_end(ap);
}

static void note(const char *fmt, ...) cor_printf(1, 2);
static void note(const char *fmt, ...)
{
	va_list ap;

	if (quiet)
		return;
	va_start(ap, fmt);
	cor_vmsg(stdout, NULL, NULL, fmt, ap);
	va_end(ap);
}

static void show_usage(FILE *f)
{
	fprintf(f,
		"usage: cor_check [options] METADATA_DEV\n"
		"Verify dm-cor metadata offline (a block device or an image file).\n\n"
		"  -q, --quiet                   print only problems\n"
		"      --clear-needs-check-flag  if the metadata is otherwise clean, clear\n"
		"                                the needs-check flag so the kernel loads it\n"
		"  -h, --help                    this text\n"
		"  -V, --version                 print the version\n\n"
		"Exit status: 0 clean (or all-zero: not formatted yet), 1 damaged,\n"
		"2 usage or I/O error, or the device is in use.\n");
}

static int dirty_not_hydrated(void *ctx, __u64 first, __u64 count)
{
	(void)ctx;
	if (count == 1)
		problem(NULL, "region %llu is dirty but not hydrated", first);
	else
		problem(NULL, "regions %llu-%llu are dirty but not hydrated", first,
			first + count - 1);
	return 0;
}

/* Check the bitmaps of @area block by block; returns -1 on an I/O error */
static int check_bitmaps(struct cor_dev *dev, const struct cor_geom *g, unsigned int area,
			 __u64 *nr_hydrated, __u64 *nr_dirty)
{
	size_t bytes = DM_COR_BITMAP_WORDS * sizeof(__u64);
	__u64 *bits[DM_COR_NR_BITMAPS], *bad, index, nbits, w;
	enum cor_blk_state st[DM_COR_NR_BITMAPS];
	struct cor_runs runs;
	unsigned int kind;
	int r = -1;

	bits[0] = malloc(bytes);
	bits[1] = malloc(bytes);
	bad = malloc(bytes);
	if (!bits[0] || !bits[1] || !bad) {
		cor_err("out of memory");
		goto out;
	}
	cor_runs_init(&runs, dirty_not_hydrated, NULL);
	*nr_hydrated = 0;
	*nr_dirty = 0;
	for (index = 0; index < g->bitmap_blocks; index++) {
		nbits = cor_block_nbits(g, index);
		for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++) {
			st[kind] = cor_read_bitmap_block(dev, g, area, kind, index, bits[kind]);
			if (st[kind] == COR_BLK_IO)
				goto out;
			if (st[kind] != COR_BLK_OK)
				problem(NULL, "%s bitmap block %llu (block %llu of area %u): %s",
					cor_bitmap_name(kind), index,
					(__u64)dm_cor_bitmap_location(g->bitmap_blocks, area,
								      kind, index),
					area, cor_blk_state_name(st[kind]));
		}
		if (st[0] != COR_BLK_OK || st[1] != COR_BLK_OK)
			continue;
		for (w = 0; w < DM_COR_BITMAP_WORDS; w++)
			bad[w] = bits[1][w] & ~bits[0][w];
		cor_runs_feed(&runs, bad, index * DM_COR_BITS_PER_BLOCK, nbits);
		cor_runs_end(&runs, index * DM_COR_BITS_PER_BLOCK + nbits);
		*nr_hydrated += cor_count_bits(bits[0], nbits);
		*nr_dirty += cor_count_bits(bits[1], nbits);
	}
	r = 0;
out:
	free(bits[0]);
	free(bits[1]);
	free(bad);
	return r;
}

static int clear_needs_check(struct cor_dev *dev, const struct cor_slots *slots)
{
	__u8 block[DM_COR_BLOCK_SIZE];
	struct cor_sb sb = slots->sb[slots->newest];
	int slot = slots->newest ^ 1;

	/* What the kernel's write_superblock() does: the spare slot, generation + 1 */
	sb.flags &= ~DM_COR_SB_NEEDS_CHECK;
	sb.generation++;
	cor_sb_encode(&sb, block);
	if (cor_dev_write(dev, slot, block) || cor_dev_sync(dev))
		return -1;
	note("needs-check flag cleared: generation %llu written to superblock slot %d",
	     sb.generation, slot);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "clear-needs-check-flag", no_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	__u64 hydrated, dirty;
	bool clear = false, needs_check;
	struct cor_slots slots;
	struct cor_dev dev;
	struct cor_geom g;
	const char *path;
	struct cor_sb *sb;
	int c, slot, r;

	cor_prog = "cor_check";
	while ((c = cor_getopt(argc, argv, "q", opts, show_usage)) != -1) {
		switch (c) {
		case 'q':
			quiet = true;
			break;
		case 'C':
			clear = true;
			break;
		}
	}
	path = cor_one_operand(argc, argv, show_usage);
	if (!path)
		return 2;

	if (cor_dev_open(&dev, path, clear ? COR_OPEN_WRITE : 0))
		return 2;
	if (dev.nr_blocks < DM_COR_NR_SUPERBLOCKS) {
		problem(NULL, "%s is too small to hold dm-cor metadata (%llu bytes)", dev.path,
			dev.size);
		return 1;
	}
	if (cor_read_slots(&dev, &slots))
		return 2;
	for (slot = 0; slot < DM_COR_NR_SUPERBLOCKS; slot++)
		if (slots.state[slot] != COR_SLOT_ZERO && slots.state[slot] != COR_SLOT_VALID &&
		    slots.newest >= 0)
			note("superblock slot %d is not valid (%s): the other one is used",
			     slot, cor_slot_state_name(slots.state[slot]));
	if (slots.newest < 0) {
		if (slots.state[0] == COR_SLOT_ZERO && slots.state[1] == COR_SLOT_ZERO) {
			note("%s is all zeroes: not formatted yet, dm-cor formats it on first load",
			     dev.path);
			return 0;
		}
		problem(NULL, "no valid superblock (slot 0: %s, slot 1: %s)",
			cor_slot_state_name(slots.state[0]), cor_slot_state_name(slots.state[1]));
		return 1;
	}

	sb = &slots.sb[slots.newest];
	cor_sb_check(sb, dev.nr_blocks, &g, problem, NULL);
	needs_check = sb->flags & DM_COR_SB_NEEDS_CHECK;
	if (needs_check && !clear)
		problem(NULL,
			"the needs-check flag is set (a metadata write failed); if nothing else is wrong, --clear-needs-check-flag clears it");
	if (nr_problems)
		return 1;

	if (check_bitmaps(&dev, &g, sb->active_area, &hydrated, &dirty))
		return 2;
	if (nr_problems) {
		if (clear && needs_check)
			problem(NULL,
				"not clearing the needs-check flag of damaged metadata: use cor_repair");
		return 1;
	}

	if (clear && needs_check) {
		if (clear_needs_check(&dev, &slots))
			return 2;
	} else if (clear) {
		note("the needs-check flag is not set: nothing to clear");
	}
	r = cor_dev_close(&dev) ? 2 : 0;
	if (!r)
		note("clean: generation %llu, region %llu sectors, %llu/%llu hydrated, %llu dirty",
		     sb->generation + (clear && needs_check), g.region_sectors, hydrated,
		     g.nr_regions, dirty);
	return r;
}
