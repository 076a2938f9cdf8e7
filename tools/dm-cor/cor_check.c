// SPDX-License-Identifier: GPL-2.0-only
/*
 * cor_check: verify dm-cor metadata offline.
 *
 * Exit status: 0 clean, 1 damaged, 2 usage or I/O error.  The on-disk
 * format is drivers/md/dm-cor-format.h, shared with the kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <endian.h>
#include <linux/fs.h>

#include "dm-cor-format.h"

#define COR_TOOLS_VERSION "0.1.0"

static uint32_t crc_table[256];

static void crc32c_init(void)
{
	uint32_t c;
	int i, k;

	for (i = 0; i < 256; i++) {
		c = i;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78 : c >> 1;
		crc_table[i] = c;
	}
}

/* The kernel's crc32c(~0, ...): no final inversion */
static uint32_t block_csum(const uint8_t *block, uint32_t xor)
{
	uint32_t crc = ~0U;
	size_t i;

	for (i = sizeof(uint32_t); i < DM_COR_BLOCK_SIZE; i++)
		crc = crc_table[(crc ^ block[i]) & 0xff] ^ (crc >> 8);
	return crc ^ xor;
}

static int nr_problems;
static bool quiet;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
	va_list ap;

	nr_problems++;
	va_start(ap, fmt);
	fputs("cor_check: damaged: ", stdout);
	vprintf(fmt, ap);
	putchar('\n');
	va_end(ap);
}

static int read_block(int fd, uint64_t blocknr, uint8_t *buf)
{
	ssize_t n = pread(fd, buf, DM_COR_BLOCK_SIZE, (off_t)(blocknr * DM_COR_BLOCK_SIZE));

	if (n == DM_COR_BLOCK_SIZE)
		return 0;
	if (n < 0)
		fprintf(stderr, "cor_check: reading block %" PRIu64 ": %s\n", blocknr,
			strerror(errno));
	else
		fprintf(stderr, "cor_check: block %" PRIu64 " is past the end of the device\n",
			blocknr);
	return -1;
}

static bool all_zero(const uint8_t *buf)
{
	size_t i;

	for (i = 0; i < DM_COR_BLOCK_SIZE; i++)
		if (buf[i])
			return false;
	return true;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cor_check [options] METADATA_DEV\n"
		"Verify dm-cor metadata offline.\n\n"
		"  -q, --quiet     print only problems\n"
		"  -h, --help      this text\n"
		"  -V, --version   print the version\n\n"
		"Exit status: 0 clean (or all-zero: not formatted yet), 1 damaged,\n"
		"2 usage or I/O error.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct dm_cor_disk_superblock sbs[2];
	uint8_t buf[DM_COR_BLOCK_SIZE];
	uint64_t dev_bytes, nr_regions, bitmap_blocks, i, hydrated = 0, dirty = 0;
	uint64_t *bits[DM_COR_NR_BITMAPS];
	int valid[2], newest = -1, fd, c, slot;
	unsigned int kind, area, w, b;
	struct stat st;

	while ((c = getopt_long(argc, argv, "qhV", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("cor_check %s (metadata version %d)\n", COR_TOOLS_VERSION,
			       DM_COR_METADATA_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}

	crc32c_init();
	fd = open(argv[optind], O_RDONLY);
	if (fd < 0 || fstat(fd, &st)) {
		fprintf(stderr, "cor_check: %s: %s\n", argv[optind], strerror(errno));
		return 2;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &dev_bytes)) {
			fprintf(stderr, "cor_check: %s: %s\n", argv[optind], strerror(errno));
			return 2;
		}
	} else {
		dev_bytes = st.st_size;
	}
	if (dev_bytes < DM_COR_NR_SUPERBLOCKS * DM_COR_BLOCK_SIZE) {
		printf("cor_check: damaged: %s is too small to hold dm-cor metadata (%" PRIu64
		       " bytes)\n", argv[optind], dev_bytes);
		return 1;
	}

	for (slot = 0; slot < 2; slot++) {
		if (read_block(fd, slot, buf))
			return 2;
		memcpy(&sbs[slot], buf, sizeof(sbs[slot]));
		valid[slot] = !all_zero(buf) &&
			      le64toh(sbs[slot].magic) == DM_COR_SB_MAGIC &&
			      le32toh(sbs[slot].csum) == block_csum(buf, DM_COR_SB_CSUM_XOR);
		if (!all_zero(buf) && !valid[slot] && !quiet)
			printf("cor_check: note: superblock slot %d is not valid (a torn or older write is harmless while the other slot is valid)\n",
			       slot);
		if (valid[slot] && (newest < 0 || le64toh(sbs[slot].generation) >
						  le64toh(sbs[newest].generation)))
			newest = slot;
	}
	if (newest < 0) {
		if (!valid[0] && !valid[1]) {
			if (read_block(fd, 0, buf))
				return 2;
			if (all_zero(buf) && (read_block(fd, 1, buf) || all_zero(buf))) {
				if (!quiet)
					printf("cor_check: %s is all zeroes: not formatted yet, dm-cor formats it on first load\n",
					       argv[optind]);
				return 0;
			}
		}
		problem("no valid superblock (bad magic or checksum in both slots)");
		return 1;
	}

	struct dm_cor_disk_superblock *sb = &sbs[newest];

	nr_regions = le64toh(sb->nr_regions);
	bitmap_blocks = le64toh(sb->bitmap_blocks);
	area = le32toh(sb->active_area);
	if (le32toh(sb->version) != DM_COR_METADATA_VERSION)
		problem("unsupported metadata version %u", le32toh(sb->version));
	if (le32toh(sb->flags) & ~DM_COR_SB_KNOWN_FLAGS)
		problem("unknown superblock flags 0x%x", le32toh(sb->flags));
	if (le32toh(sb->flags) & DM_COR_SB_NEEDS_CHECK)
		problem("the needs-check flag is set (a metadata write failed)");
	if (le32toh(sb->block_sectors) != DM_COR_BLOCK_SECTORS)
		problem("block size %u sectors, expected %u", le32toh(sb->block_sectors),
			DM_COR_BLOCK_SECTORS);
	uint64_t region = le64toh(sb->region_sectors), len = le64toh(sb->target_sectors);

	if (region < 8 || region > 2097152 || (region & (region - 1)))
		problem("region size %" PRIu64 " sectors is invalid", region);
	else if (nr_regions != (len + region - 1) / region)
		problem("%" PRIu64 " regions do not match length %" PRIu64 " / region %" PRIu64,
			nr_regions, len, region);
	if (bitmap_blocks != dm_cor_bitmap_blocks(nr_regions))
		problem("%" PRIu64 " bitmap blocks, expected %" PRIu64, bitmap_blocks,
			(uint64_t)dm_cor_bitmap_blocks(nr_regions));
	if (le64toh(sb->nr_metadata_blocks) != dm_cor_metadata_blocks(nr_regions))
		problem("layout size %" PRIu64 " blocks, expected %" PRIu64,
			(uint64_t)le64toh(sb->nr_metadata_blocks),
			(uint64_t)dm_cor_metadata_blocks(nr_regions));
	if (dm_cor_metadata_blocks(nr_regions) > dev_bytes / DM_COR_BLOCK_SIZE)
		problem("layout needs %" PRIu64 " blocks, the device has %" PRIu64,
			(uint64_t)dm_cor_metadata_blocks(nr_regions), dev_bytes / DM_COR_BLOCK_SIZE);
	if (area >= DM_COR_NR_AREAS)
		problem("active area %u is invalid", area);
	if (nr_problems)
		return 1;

	for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++) {
		bits[kind] = calloc(bitmap_blocks * DM_COR_BITMAP_WORDS, sizeof(uint64_t));
		if (!bits[kind]) {
			fprintf(stderr, "cor_check: out of memory\n");
			return 2;
		}
		for (i = 0; i < bitmap_blocks; i++) {
			uint64_t loc = dm_cor_bitmap_location(bitmap_blocks, area, kind, i);
			const struct dm_cor_disk_bitmap_header *hdr = (const void *)buf;
			const uint8_t *words = buf + sizeof(*hdr);

			if (read_block(fd, loc, buf))
				return 2;
			if (le32toh(hdr->csum) != block_csum(buf, DM_COR_BITMAP_CSUM_XOR)) {
				problem("%s bitmap block %" PRIu64 " (block %" PRIu64 "): checksum mismatch",
					kind ? "dirty" : "hydrated", i, loc);
				continue;
			}
			if (le32toh(hdr->kind) != kind || le64toh(hdr->blocknr) != loc) {
				problem("bitmap block %" PRIu64 " claims kind %u at block %" PRIu64,
					loc, le32toh(hdr->kind), (uint64_t)le64toh(hdr->blocknr));
				continue;
			}
			for (w = 0; w < DM_COR_BITMAP_WORDS; w++) {
				uint64_t v;

				memcpy(&v, words + 8 * w, 8);
				bits[kind][i * DM_COR_BITMAP_WORDS + w] = le64toh(v);
			}
		}
	}
	if (nr_problems)
		return 1;

	for (i = 0; i < bitmap_blocks * DM_COR_BITMAP_WORDS; i++) {
		for (b = 0; b < 64; b++) {
			uint64_t r = i * 64 + b, m = 1ULL << b;
			bool h = bits[0][i] & m, d = bits[1][i] & m;

			if ((h || d) && r >= nr_regions) {
				problem("region %" PRIu64 " past the last region is marked", r);
				continue;
			}
			if (d && !h)
				problem("region %" PRIu64 " is dirty but not hydrated", r);
			hydrated += h;
			dirty += d;
		}
	}
	if (nr_problems)
		return 1;

	if (!quiet)
		printf("cor_check: clean: generation %" PRIu64 ", region %" PRIu64
		       " sectors, %" PRIu64 "/%" PRIu64 " hydrated, %" PRIu64 " dirty\n",
		       (uint64_t)le64toh(sb->generation), region, hydrated, nr_regions, dirty);
	close(fd);
	return 0;
}
