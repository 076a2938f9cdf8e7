// SPDX-License-Identifier: GPL-2.0-only
/*
 * cor_dump: print dm-cor metadata, for people (the default) or as XML that
 * cor_restore reads back.  See man/cor_dump.8 for both formats.
 *
 * Exit status: 0 dumped, 1 the metadata is damaged or not formatted
 * (nothing dumped), 2 usage or I/O error, or the device is in use.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cor-meta.h"

enum format { FMT_HUMAN, FMT_XML };

struct dumper {
	FILE *out;
	enum format fmt;
	int col;		/* human: column of the range list */
};

static void show_usage(FILE *f)
{
	fprintf(f,
		"usage: cor_dump [options] METADATA_DEV\n"
		"Print dm-cor metadata: its superblocks and the hydrated and dirty\n"
		"regions as ranges.\n\n"
		"  -f, --format FMT   human (default) or xml (read back by cor_restore)\n"
		"  -o, --output FILE  write to FILE instead of standard output\n"
		"  -h, --help         this text\n"
		"  -V, --version      print the version\n\n"
		"Exit status: 0 dumped, 1 damaged or not formatted metadata (run cor_check),\n"
		"2 usage or I/O error, or the device is in use.\n");
}

static void report_damage(void *ctx, const char *fmt, ...) cor_printf(2, 3);
static void report_damage(void *ctx, const char *fmt, ...)
{
	va_list ap;

	*(int *)ctx += 1;
	va_start(ap, fmt);
	cor_vmsg(stderr, NULL, "damaged: ", fmt, ap);
	va_end(ap);
}

static int emit_range(void *ctx, __u64 first, __u64 count)
{
	struct dumper *d = ctx;
	char buf[64];
	int n;

	if (d->fmt == FMT_XML) {
		fprintf(d->out, "    <range begin=\"%llu\" length=\"%llu\"/>\n", first, count);
		return 0;
	}
	if (count == 1)
		n = snprintf(buf, sizeof(buf), "%llu", first);
	else
		n = snprintf(buf, sizeof(buf), "%llu-%llu", first, first + count - 1);
	if (d->col && d->col + 1 + n > 78) {
		fputc('\n', d->out);
		d->col = 0;
	}
	if (!d->col) {
		fputs("  ", d->out);
		d->col = 2;
	} else {
		fputc(' ', d->out);
		d->col++;
	}
	fputs(buf, d->out);
	d->col += n;
	return 0;
}

/* Check every bitmap block of @area first: nothing is dumped from damage */
static int check_bitmaps(struct cor_dev *dev, const struct cor_geom *g, unsigned int area,
			 __u64 *count)
{
	__u64 *bits[DM_COR_NR_BITMAPS], index, nbits, w;
	size_t bytes = DM_COR_BITMAP_WORDS * sizeof(__u64);
	enum cor_blk_state st;
	unsigned int kind;
	int bad = 0, r = 2;

	bits[0] = malloc(bytes);
	bits[1] = malloc(bytes);
	if (!bits[0] || !bits[1]) {
		cor_err("out of memory");
		goto out;
	}
	count[0] = 0;
	count[1] = 0;
	for (index = 0; index < g->bitmap_blocks; index++) {
		nbits = cor_block_nbits(g, index);
		for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++) {
			st = cor_read_bitmap_block(dev, g, area, kind, index, bits[kind]);
			if (st == COR_BLK_IO)
				goto out;
			if (st != COR_BLK_OK) {
				report_damage(&bad, "%s bitmap block %llu of area %u: %s",
					      cor_bitmap_name(kind), index, area,
					      cor_blk_state_name(st));
				continue;
			}
			count[kind] += cor_count_bits(bits[kind], nbits);
		}
		for (w = 0; w < DM_COR_BITMAP_WORDS; w++) {
			if (bits[1][w] & ~bits[0][w]) {
				report_damage(&bad, "bitmap block %llu: dirty regions not hydrated",
					      index);
				break;
			}
		}
	}
	r = bad ? 1 : 0;
out:
	free(bits[0]);
	free(bits[1]);
	return r;
}

static int dump_bitmap(struct dumper *d, struct cor_dev *dev, const struct cor_geom *g,
		       unsigned int area, unsigned int kind)
{
	__u64 *words, index, nbits;
	struct cor_runs runs;

	words = malloc(DM_COR_BITMAP_WORDS * sizeof(__u64));
	if (!words) {
		cor_err("out of memory");
		return -1;
	}
	cor_runs_init(&runs, emit_range, d);
	d->col = 0;
	for (index = 0; index < g->bitmap_blocks; index++) {
		nbits = cor_block_nbits(g, index);
		/* checked already: only an I/O error can happen now */
		if (cor_read_bitmap_block(dev, g, area, kind, index, words) != COR_BLK_OK) {
			free(words);
			cor_err("%s: bitmap block %llu changed while it was dumped", dev->path,
				index);
			return -1;
		}
		cor_runs_feed(&runs, words, index * DM_COR_BITS_PER_BLOCK, nbits);
	}
	cor_runs_end(&runs, g->nr_regions);
	if (d->fmt == FMT_HUMAN && d->col)
		fputc('\n', d->out);
	free(words);
	return 0;
}

/* Superblock fields that differ from the active superblock's geometry */
static void print_sb_extra(struct dumper *d, const struct cor_sb *sb,
			   const struct cor_sb *act)
{
	const char *fmt = d->fmt == FMT_XML ? " %s=\"%llu\"" : ", %s %llu";
	char uuid[40];

	if (sb->version != DM_COR_METADATA_VERSION)
		fprintf(d->out, fmt, "version", (__u64)sb->version);
	if (sb->block_sectors != DM_COR_BLOCK_SECTORS)
		fprintf(d->out, fmt, "block_sectors", (__u64)sb->block_sectors);
	if (sb->region_sectors != act->region_sectors)
		fprintf(d->out, fmt, "region_sectors", sb->region_sectors);
	if (sb->target_sectors != act->target_sectors)
		fprintf(d->out, fmt, "target_sectors", sb->target_sectors);
	if (sb->nr_regions != act->nr_regions)
		fprintf(d->out, fmt, "nr_regions", sb->nr_regions);
	if (sb->bitmap_blocks != act->bitmap_blocks)
		fprintf(d->out, fmt, "bitmap_blocks", sb->bitmap_blocks);
	if (sb->nr_metadata_blocks != act->nr_metadata_blocks)
		fprintf(d->out, fmt, "nr_metadata_blocks", sb->nr_metadata_blocks);
	if (sb->reserved)
		fprintf(d->out, fmt, "reserved", (__u64)sb->reserved);
	if (memcmp(sb->uuid, act->uuid, sizeof(sb->uuid))) {
		cor_format_uuid(sb->uuid, uuid);
		fprintf(d->out, d->fmt == FMT_XML ? " uuid=\"%s\"" : ", uuid %s", uuid);
	}
}

static void dump_xml_head(struct dumper *d, const struct cor_slots *slots)
{
	const struct cor_sb *act = &slots->sb[slots->newest];
	const struct cor_sb *sb;
	char uuid[40];
	int slot;

	cor_format_uuid(act->uuid, uuid);
	fprintf(d->out,
		"<cor_metadata version=\"%u\" uuid=\"%s\" region_sectors=\"%llu\" target_sectors=\"%llu\" nr_regions=\"%llu\" active_slot=\"%d\">\n",
		act->version, uuid, act->region_sectors, act->target_sectors, act->nr_regions,
		slots->newest);
	for (slot = 0; slot < DM_COR_NR_SUPERBLOCKS; slot++) {
		sb = &slots->sb[slot];
		if (slots->state[slot] != COR_SLOT_VALID) {
			fprintf(d->out, "  <superblock slot=\"%d\" state=\"unused\"/>\n", slot);
			continue;
		}
		fprintf(d->out,
			"  <superblock slot=\"%d\" generation=\"%llu\" active_area=\"%u\" flags=\"%u\"",
			slot, sb->generation, sb->active_area, sb->flags);
		print_sb_extra(d, sb, act);
		fputs("/>\n", d->out);
	}
}

static void dump_human_head(struct dumper *d, struct cor_dev *dev,
			    const struct cor_slots *slots)
{
	const struct cor_sb *act = &slots->sb[slots->newest];
	const struct cor_sb *sb;
	char uuid[40];
	int slot;

	cor_format_uuid(act->uuid, uuid);
	fprintf(d->out, "metadata         %s (%llu blocks of %d bytes)\n", dev->path,
		dev->nr_blocks, DM_COR_BLOCK_SIZE);
	for (slot = 0; slot < DM_COR_NR_SUPERBLOCKS; slot++) {
		sb = &slots->sb[slot];
		fprintf(d->out, "superblock %d     ", slot);
		if (slots->state[slot] != COR_SLOT_VALID) {
			fprintf(d->out,
				"not valid (%s)\n",
				cor_slot_state_name(slots->state[slot]));
			continue;
		}
		fprintf(d->out, "generation %llu, area %u, flags 0x%x", sb->generation,
			sb->active_area, sb->flags);
		print_sb_extra(d, sb, act);
		fputs(slot == slots->newest ? " (active)\n" : "\n", d->out);
	}
	fprintf(d->out, "version          %u\n", act->version);
	fprintf(d->out, "uuid             %s\n", uuid);
	fprintf(d->out, "region size      %llu sectors\n", act->region_sectors);
	fprintf(d->out, "device length    %llu sectors\n", act->target_sectors);
	fprintf(d->out, "regions          %llu\n", act->nr_regions);
	fprintf(d->out, "bitmap blocks    %llu per bitmap (layout: %llu blocks)\n",
		act->bitmap_blocks, act->nr_metadata_blocks);
	fprintf(d->out, "needs check      %s\n",
		act->flags & DM_COR_SB_NEEDS_CHECK ? "yes (a metadata write failed)" : "no");
}

static FILE *open_output(const char *path)
{
	struct stat st;
	FILE *f;

	if (!stat(path, &st) && S_ISBLK(st.st_mode)) {
		cor_err("%s: is a block device: -o writes a text file", path);
		return NULL;
	}
	f = fopen(path, "w");
	if (!f)
		cor_err("%s: %s", path, strerror(errno));
	return f;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	struct dumper d = { .fmt = FMT_HUMAN };
	const char *output = NULL, *path, *name;
	struct cor_slots slots;
	__u64 count[2];
	struct cor_dev dev;
	struct cor_geom g;
	unsigned int kind, area;
	int c, bad = 0, r;

	cor_prog = "cor_dump";
	while ((c = cor_getopt(argc, argv, "f:o:", opts, show_usage)) != -1) {
		switch (c) {
		case 'f':
			if (!strcmp(optarg, "human")) {
				d.fmt = FMT_HUMAN;
			} else if (!strcmp(optarg, "xml")) {
				d.fmt = FMT_XML;
			} else {
				cor_err("unknown format '%s' (human or xml)", optarg);
				return 2;
			}
			break;
		case 'o':
			output = optarg;
			break;
		}
	}
	path = cor_one_operand(argc, argv, show_usage);
	if (!path)
		return 2;

	if (cor_dev_open(&dev, path, 0))
		return 2;
	if (dev.nr_blocks < DM_COR_NR_SUPERBLOCKS) {
		cor_err("damaged: %s is too small to hold dm-cor metadata (%llu bytes)", dev.path,
			dev.size);
		return 1;
	}
	if (cor_read_slots(&dev, &slots))
		return 2;
	if (slots.newest < 0) {
		if (slots.state[0] == COR_SLOT_ZERO && slots.state[1] == COR_SLOT_ZERO)
			cor_err("%s is all zeroes: not formatted yet, nothing to dump", dev.path);
		else
			cor_err("damaged: no valid superblock (slot 0: %s, slot 1: %s): try cor_repair",
				cor_slot_state_name(slots.state[0]),
				cor_slot_state_name(slots.state[1]));
		return 1;
	}
	if (cor_sb_check(&slots.sb[slots.newest], dev.nr_blocks, &g, report_damage, &bad))
		return 1;
	area = slots.sb[slots.newest].active_area;
	r = check_bitmaps(&dev, &g, area, count);
	if (r) {
		if (r == 1)
			cor_err("not dumping damaged metadata: cor_repair rebuilds what can be trusted");
		return r;
	}

	d.out = stdout;
	if (output) {
		d.out = open_output(output);
		if (!d.out)
			return 2;
	}
	if (d.fmt == FMT_XML)
		dump_xml_head(&d, &slots);
	else
		dump_human_head(&d, &dev, &slots);
	for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++) {
		name = cor_bitmap_name(kind);
		if (d.fmt == FMT_XML)
			fprintf(d.out, "  <%s count=\"%llu\">\n", name, count[kind]);
		else
			fprintf(d.out, "%-16s %llu regions\n", name, count[kind]);
		if (dump_bitmap(&d, &dev, &g, area, kind))
			return 2;
		if (d.fmt == FMT_XML)
			fprintf(d.out, "  </%s>\n", name);
	}
	if (d.fmt == FMT_XML)
		fputs("</cor_metadata>\n", d.out);
	if (fflush(d.out) || ferror(d.out) || (output && fclose(d.out))) {
		cor_err("%s: write error: %s", output ? output : "standard output",
			strerror(errno));
		return 2;
	}
	cor_dev_close(&dev);
	return 0;
}
