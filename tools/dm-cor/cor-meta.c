// SPDX-License-Identifier: GPL-2.0-only
/*
 * cor-meta: the metadata access shared by the dm-cor userspace tools.
 * The on-disk format is drivers/md/dm-cor-format.h, and every check here
 * mirrors one of drivers/md/dm-cor-metadata.c.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <linux/fs.h>

#include "cor-meta.h"

const char *cor_prog = "cor";

void cor_vmsg(FILE *f, const char *path, const char *prefix, const char *fmt, va_list ap)
{
	fprintf(f, "%s: %s%s", cor_prog, path ? path : "", prefix ? prefix : "");
	vfprintf(f, fmt, ap);
	fputc('\n', f);
}

void cor_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cor_vmsg(stderr, NULL, NULL, fmt, ap);
	va_end(ap);
}

void cor_print_version(void)
{
	printf("%s %s (dm-cor metadata version %d)\n", cor_prog, COR_TOOLS_VERSION,
	       DM_COR_METADATA_VERSION);
}

/* Command lines */

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define MAX_TOOL_OPTS	8

/* The long options every tool has, after its own */
static const struct option std_opts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

int cor_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
	       cor_usage_fn usage)
{
	static struct option all[MAX_TOOL_OPTS + ARRAY_SIZE(std_opts)];
	char optstring[3 * MAX_TOOL_OPTS + 3];
	size_t n;
	int c;

	for (n = 0; longopts[n].name && n < MAX_TOOL_OPTS; n++)
		all[n] = longopts[n];
	memcpy(&all[n], std_opts, sizeof(std_opts));
	snprintf(optstring, sizeof(optstring), "%shV", shortopts);
	c = getopt_long(argc, argv, optstring, all, NULL);
	switch (c) {
	case 'h':
		usage(stdout);
		exit(0);
	case 'V':
		cor_print_version();
		exit(0);
	case '?':
		usage(stderr);
		exit(2);
	}
	return c;
}

const char *cor_one_operand(int argc, char **argv, cor_usage_fn usage)
{
	if (optind == argc - 1)
		return argv[optind];
	if (optind < argc)
		cor_err("one metadata device expected, %d given", argc - optind);
	usage(stderr);
	return NULL;
}

int cor_io_args(int argc, char **argv, cor_usage_fn usage, const char *needed,
		struct cor_io_args *args)
{
	static const struct option opts[] = {
		{ "input", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{ "quiet", no_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(args, 0, sizeof(*args));
	while ((c = cor_getopt(argc, argv, "i:o:q", opts, usage)) != -1) {
		switch (c) {
		case 'i':
			args->input = optarg;
			break;
		case 'o':
			args->output = optarg;
			break;
		case 'q':
			args->quiet = true;
			break;
		}
	}
	if (!args->input || !args->output || optind != argc) {
		cor_err("%s are needed, and nothing else", needed);
		usage(stderr);
		return -1;
	}
	return 0;
}

/* Devices */

/* Open an existing file or block device; 0 or -1 (reported) */
static int open_existing(struct cor_dev *dev, const char *path, const struct stat *st,
			 bool write)
{
	int oflags = (write ? O_RDWR : O_RDONLY) | O_CLOEXEC;

	if (S_ISDIR(st->st_mode)) {
		cor_err("%s: is a directory, not a metadata device or file", path);
		return -1;
	}
	if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode)) {
		cor_err("%s: is neither a block device nor a regular file", path);
		return -1;
	}
	/*
	 * A live table holds its metadata device exclusively: O_EXCL fails
	 * with EBUSY then, instead of reading stale blocks or writing under
	 * the kernel's feet.
	 */
	if (S_ISBLK(st->st_mode))
		oflags |= O_EXCL;
	dev->fd = open(path, oflags);
	if (dev->fd >= 0)
		return 0;
	if (errno == EBUSY && S_ISBLK(st->st_mode))
		cor_err("%s is in use (by a live dm-cor device?): refusing to open it", path);
	else if (write && (errno == EROFS || errno == EACCES || errno == EPERM))
		cor_err("%s: cannot open for writing: %s", path, strerror(errno));
	else
		cor_err("%s: %s", path, strerror(errno));
	return -1;
}

int cor_dev_open(struct cor_dev *dev, const char *path, unsigned int flags)
{
	bool write = flags & (COR_OPEN_WRITE | COR_OPEN_CREATE);
	struct stat st;
	int ro;

	memset(dev, 0, sizeof(*dev));
	dev->path = path;
	dev->fd = -1;

	if (!stat(path, &st)) {
		if (open_existing(dev, path, &st, write))
			return -1;
	} else {
		if (errno != ENOENT || !(flags & COR_OPEN_CREATE)) {
			cor_err("%s: %s", path, strerror(errno));
			return -1;
		}
		dev->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (dev->fd < 0) {
			cor_err("%s: cannot create: %s", path, strerror(errno));
			return -1;
		}
		dev->created = 1;
	}

	if (fstat(dev->fd, &st)) {
		cor_err("%s: %s", path, strerror(errno));
		goto bad;
	}
	dev->writable = write;
	if (S_ISBLK(st.st_mode)) {
		dev->is_blk = 1;
		if (ioctl(dev->fd, BLKGETSIZE64, &dev->size)) {
			cor_err("%s: cannot get the device size: %s", path, strerror(errno));
			goto bad;
		}
		if (write && !ioctl(dev->fd, BLKROGET, &ro) && ro) {
			cor_err("%s: the block device is read-only", path);
			goto bad;
		}
		/* Drop cached blocks the kernel may have rewritten behind them */
		ioctl(dev->fd, BLKFLSBUF, 0);
	} else if (S_ISREG(st.st_mode)) {
		dev->size = st.st_size;
	} else {
		cor_err("%s: is neither a block device nor a regular file", path);
		goto bad;
	}
	dev->nr_blocks = dev->size / DM_COR_BLOCK_SIZE;
	return 0;

bad:
	close(dev->fd);
	dev->fd = -1;
	return -1;
}

int cor_dev_close(struct cor_dev *dev)
{
	int r = 0;

	if (dev->fd >= 0 && close(dev->fd)) {
		cor_err("%s: %s", dev->path, strerror(errno));
		r = -1;
	}
	dev->fd = -1;
	return r;
}

/* Block @blocknr whole: written from @wbuf if it is not NULL, else read into @rbuf */
static int dev_rw(struct cor_dev *dev, __u64 blocknr, void *rbuf, const void *wbuf)
{
	off_t pos = (off_t)(blocknr * DM_COR_BLOCK_SIZE);
	size_t done = 0;
	ssize_t n;

	if (blocknr >= dev->nr_blocks) {
		cor_err("%s: block %llu is past the end (%llu blocks)", dev->path, blocknr,
			dev->nr_blocks);
		return -1;
	}
	while (done < DM_COR_BLOCK_SIZE) {
		if (wbuf)
			n = pwrite(dev->fd, (const char *)wbuf + done, DM_COR_BLOCK_SIZE - done,
				   pos + done);
		else
			n = pread(dev->fd, (char *)rbuf + done, DM_COR_BLOCK_SIZE - done,
				  pos + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (wbuf && !n)) {
			cor_err("%s: %s block %llu: %s", dev->path, wbuf ? "writing" : "reading",
				blocknr, n < 0 ? strerror(errno) : "short write");
			return -1;
		}
		if (!n) {
			cor_err("%s: block %llu: unexpected end of file", dev->path, blocknr);
			return -1;
		}
		done += n;
	}
	return 0;
}

int cor_dev_read(struct cor_dev *dev, __u64 blocknr, void *block)
{
	return dev_rw(dev, blocknr, block, NULL);
}

int cor_dev_write(struct cor_dev *dev, __u64 blocknr, const void *block)
{
	return dev_rw(dev, blocknr, NULL, block);
}

int cor_dev_sync(struct cor_dev *dev)
{
	if (fsync(dev->fd)) {
		cor_err("%s: flushing: %s", dev->path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Only for a regular file */
int cor_dev_set_size(struct cor_dev *dev, __u64 nr_blocks)
{
	struct statvfs vfs;

	if (dev->is_blk || nr_blocks > (__u64)INT64_MAX / DM_COR_BLOCK_SIZE) {
		cor_err("%s: cannot make it %llu blocks long", dev->path, nr_blocks);
		return -1;
	}
	/* every block gets written: refuse what cannot fit rather than fill the disk */
	if (!fstatvfs(dev->fd, &vfs) &&
	    nr_blocks > (__u64)vfs.f_bavail * vfs.f_frsize / DM_COR_BLOCK_SIZE) {
		cor_err("%s: %llu blocks needed, the file system has room for %llu", dev->path,
			nr_blocks, (__u64)vfs.f_bavail * vfs.f_frsize / DM_COR_BLOCK_SIZE);
		return -1;
	}
	if (ftruncate(dev->fd, (off_t)(nr_blocks * DM_COR_BLOCK_SIZE))) {
		cor_err("%s: cannot make it %llu blocks long: %s", dev->path, nr_blocks,
			strerror(errno));
		return -1;
	}
	dev->size = nr_blocks * DM_COR_BLOCK_SIZE;
	dev->nr_blocks = nr_blocks;
	return 0;
}

int cor_dev_reserve(struct cor_dev *out, __u64 nr_blocks)
{
	if (out->created && cor_dev_set_size(out, nr_blocks))
		return -1;
	if (out->nr_blocks < nr_blocks) {
		cor_err("%s: too small: the metadata needs %llu blocks (%llu bytes), it has %llu bytes",
			out->path, nr_blocks, nr_blocks * DM_COR_BLOCK_SIZE, out->size);
		return -1;
	}
	return 0;
}

/* Checksums: the kernel's crc32c(~0, ...), no final inversion */

static __u32 crc_table[256];

static void crc32c_init(void)
{
	__u32 c;
	int i, k;

	for (i = 0; i < 256; i++) {
		c = i;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78 : c >> 1;
		crc_table[i] = c;
	}
}

__u32 cor_block_csum(const void *block, __u32 xor)
{
	const __u8 *p = block;
	__u32 crc = ~0U;
	size_t i;

	if (!crc_table[1])
		crc32c_init();
	for (i = sizeof(__le32); i < DM_COR_BLOCK_SIZE; i++)
		crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return crc ^ xor;
}

bool cor_block_is_zero(const void *block)
{
	const __u8 *p = block;
	size_t i;

	for (i = 0; i < DM_COR_BLOCK_SIZE; i++)
		if (p[i])
			return false;
	return true;
}

/* Superblocks */

void cor_sb_decode(const void *block, struct cor_sb *sb)
{
	struct dm_cor_disk_superblock d;

	memcpy(&d, block, sizeof(d));
	sb->csum = le32toh(d.csum);
	sb->flags = le32toh(d.flags);
	sb->magic = le64toh(d.magic);
	sb->version = le32toh(d.version);
	sb->block_sectors = le32toh(d.block_sectors);
	sb->generation = le64toh(d.generation);
	sb->region_sectors = le64toh(d.region_sectors);
	sb->target_sectors = le64toh(d.target_sectors);
	sb->nr_regions = le64toh(d.nr_regions);
	sb->bitmap_blocks = le64toh(d.bitmap_blocks);
	sb->nr_metadata_blocks = le64toh(d.nr_metadata_blocks);
	sb->active_area = le32toh(d.active_area);
	sb->reserved = le32toh(d.reserved);
	memcpy(sb->uuid, d.uuid, sizeof(sb->uuid));
}

/* The whole block, the rest of it zero, with its checksum */
void cor_sb_encode(const struct cor_sb *sb, void *block)
{
	struct dm_cor_disk_superblock d;

	memset(&d, 0, sizeof(d));
	d.flags = htole32(sb->flags);
	d.magic = htole64(sb->magic);
	d.version = htole32(sb->version);
	d.block_sectors = htole32(sb->block_sectors);
	d.generation = htole64(sb->generation);
	d.region_sectors = htole64(sb->region_sectors);
	d.target_sectors = htole64(sb->target_sectors);
	d.nr_regions = htole64(sb->nr_regions);
	d.bitmap_blocks = htole64(sb->bitmap_blocks);
	d.nr_metadata_blocks = htole64(sb->nr_metadata_blocks);
	d.active_area = htole32(sb->active_area);
	d.reserved = htole32(sb->reserved);
	memcpy(d.uuid, sb->uuid, sizeof(d.uuid));
	memset(block, 0, DM_COR_BLOCK_SIZE);
	memcpy(block, &d, sizeof(d));
	d.csum = htole32(cor_block_csum(block, DM_COR_SB_CSUM_XOR));
	memcpy(block, &d.csum, sizeof(d.csum));
}

void cor_sb_init(struct cor_sb *sb, const struct cor_geom *g, __u64 generation,
		 unsigned int area, __u32 flags, const __u8 *uuid)
{
	memset(sb, 0, sizeof(*sb));
	sb->flags = flags;
	sb->magic = DM_COR_SB_MAGIC;
	sb->version = DM_COR_METADATA_VERSION;
	sb->block_sectors = DM_COR_BLOCK_SECTORS;
	sb->generation = generation;
	sb->region_sectors = g->region_sectors;
	sb->target_sectors = g->target_sectors;
	sb->nr_regions = g->nr_regions;
	sb->bitmap_blocks = g->bitmap_blocks;
	sb->nr_metadata_blocks = g->nr_metadata_blocks;
	sb->active_area = area;
	memcpy(sb->uuid, uuid, sizeof(sb->uuid));
}

const char *cor_slot_state_name(enum cor_slot_state state)
{
	switch (state) {
	case COR_SLOT_ZERO:
		return "all zeroes";
	case COR_SLOT_VALID:
		return "valid";
	case COR_SLOT_BAD_MAGIC:
		return "bad magic";
	case COR_SLOT_BAD_CSUM:
		return "checksum mismatch";
	}
	return "?";
}

/* As read_superblocks(): the valid slot with the highest generation, slot 0 on a tie */
int cor_newest_slot(const enum cor_slot_state *state, const struct cor_sb *sb)
{
	int slot, newest = -1;

	for (slot = 0; slot < DM_COR_NR_SUPERBLOCKS; slot++)
		if (state[slot] == COR_SLOT_VALID &&
		    (newest < 0 || sb[slot].generation > sb[newest].generation))
			newest = slot;
	return newest;
}

int cor_read_slots(struct cor_dev *dev, struct cor_slots *slots)
{
	__u8 block[DM_COR_BLOCK_SIZE];
	int slot;

	for (slot = 0; slot < DM_COR_NR_SUPERBLOCKS; slot++) {
		if (cor_dev_read(dev, slot, block))
			return -1;
		cor_sb_decode(block, &slots->sb[slot]);
		if (cor_block_is_zero(block))
			slots->state[slot] = COR_SLOT_ZERO;
		else if (slots->sb[slot].magic != DM_COR_SB_MAGIC)
			slots->state[slot] = COR_SLOT_BAD_MAGIC;
		else if (slots->sb[slot].csum != cor_block_csum(block, DM_COR_SB_CSUM_XOR))
			slots->state[slot] = COR_SLOT_BAD_CSUM;
		else
			slots->state[slot] = COR_SLOT_VALID;
	}
	slots->newest = cor_newest_slot(slots->state, slots->sb);
	return 0;
}

int cor_geom_compute(__u64 region_sectors, __u64 target_sectors, struct cor_geom *g,
		     const char **why)
{
	if (region_sectors < 8 || region_sectors > 2097152 ||
	    (region_sectors & (region_sectors - 1))) {
		*why = "the region size is not a power of two between 8 and 2097152 sectors";
		return -1;
	}
	if (!target_sectors) {
		*why = "the device length is zero";
		return -1;
	}
	g->region_sectors = region_sectors;
	g->target_sectors = target_sectors;
	/* no overflow: region_sectors >= 8 */
	g->nr_regions = target_sectors / region_sectors + !!(target_sectors % region_sectors);
	g->bitmap_blocks = dm_cor_bitmap_blocks(g->nr_regions);
	g->nr_metadata_blocks = dm_cor_metadata_blocks(g->nr_regions);
	return 0;
}

int cor_sb_check(const struct cor_sb *sb, __u64 dev_blocks, struct cor_geom *g,
		 cor_report_fn report, void *ctx)
{
	struct cor_geom t;
	const char *why;
	int n = 0;

	if (sb->generation == ~0ULL) {
		report(ctx, "generation %llu is the largest possible: no commit could follow it",
		       sb->generation);
		n++;
	}
	if (sb->version != DM_COR_METADATA_VERSION) {
		report(ctx, "unsupported metadata version %u (this tool knows %u)", sb->version,
		       DM_COR_METADATA_VERSION);
		n++;
	}
	if (sb->flags & ~DM_COR_SB_KNOWN_FLAGS) {
		report(ctx, "unknown superblock flags 0x%x", sb->flags & ~DM_COR_SB_KNOWN_FLAGS);
		n++;
	}
	if (sb->block_sectors != DM_COR_BLOCK_SECTORS) {
		report(ctx, "block size %u sectors, expected %u", sb->block_sectors,
		       DM_COR_BLOCK_SECTORS);
		n++;
	}
	if (sb->active_area >= DM_COR_NR_AREAS) {
		report(ctx, "active area %u is invalid", sb->active_area);
		n++;
	}
	if (cor_geom_compute(sb->region_sectors, sb->target_sectors, &t, &why)) {
		report(ctx, "%s (region %llu sectors, length %llu sectors)", why,
		       sb->region_sectors, sb->target_sectors);
		return n + 1;
	}
	if (sb->nr_regions != t.nr_regions) {
		report(ctx, "%llu regions do not match length %llu / region %llu (%llu regions)",
		       sb->nr_regions, t.target_sectors, t.region_sectors, t.nr_regions);
		n++;
	}
	if (sb->bitmap_blocks != t.bitmap_blocks) {
		report(ctx, "%llu bitmap blocks, expected %llu", sb->bitmap_blocks,
		       t.bitmap_blocks);
		n++;
	}
	if (sb->nr_metadata_blocks != t.nr_metadata_blocks) {
		report(ctx, "layout size %llu blocks, expected %llu", sb->nr_metadata_blocks,
		       t.nr_metadata_blocks);
		n++;
	}
	if (dev_blocks && t.nr_metadata_blocks > dev_blocks) {
		report(ctx, "the layout needs %llu blocks, the device has only %llu (truncated?)",
		       t.nr_metadata_blocks, dev_blocks);
		n++;
	}
	if (!n && g)
		*g = t;
	return n;
}

/* Bitmap blocks */

const char *cor_bitmap_name(unsigned int kind)
{
	return kind == DM_COR_BITMAP_DIRTY ? "dirty" : "hydrated";
}

const char *cor_blk_state_name(enum cor_blk_state state)
{
	switch (state) {
	case COR_BLK_OK:
		return "valid";
	case COR_BLK_IO:
		return "unreadable";
	case COR_BLK_CSUM:
		return "checksum mismatch";
	case COR_BLK_PLACE:
		return "wrong kind or block number in its header";
	case COR_BLK_PAST_END:
		return "bits set past the last region";
	}
	return "?";
}

__u64 cor_block_nbits(const struct cor_geom *g, __u64 index)
{
	__u64 first = index * DM_COR_BITS_PER_BLOCK;

	if (first >= g->nr_regions)
		return 0;
	return g->nr_regions - first < DM_COR_BITS_PER_BLOCK ? g->nr_regions - first :
							       DM_COR_BITS_PER_BLOCK;
}

enum cor_blk_state cor_read_bitmap_block(struct cor_dev *dev, const struct cor_geom *g,
					 unsigned int area, unsigned int kind, __u64 index,
					 __u64 *words)
{
	__u64 location = dm_cor_bitmap_location(g->bitmap_blocks, area, kind, index);
	__u8 block[DM_COR_BLOCK_SIZE];
	struct dm_cor_disk_bitmap_header hdr;
	__u64 nbits = cor_block_nbits(g, index), w, v;

	if (cor_dev_read(dev, location, block)) {
		memset(words, 0, DM_COR_BITMAP_WORDS * sizeof(*words));
		return COR_BLK_IO;
	}
	memcpy(&hdr, block, sizeof(hdr));
	for (w = 0; w < DM_COR_BITMAP_WORDS; w++) {
		memcpy(&v, block + sizeof(hdr) + 8 * w, sizeof(v));
		words[w] = le64toh(v);
	}
	if (le32toh(hdr.csum) != cor_block_csum(block, DM_COR_BITMAP_CSUM_XOR))
		return COR_BLK_CSUM;
	if (le32toh(hdr.kind) != kind || le64toh(hdr.blocknr) != location)
		return COR_BLK_PLACE;
	if (nbits % 64 && words[nbits / 64] >> (nbits % 64))
		return COR_BLK_PAST_END;
	for (w = (nbits + 63) / 64; w < DM_COR_BITMAP_WORDS; w++)
		if (words[w])
			return COR_BLK_PAST_END;
	return COR_BLK_OK;
}

void cor_bitmap_block_encode(void *block, unsigned int kind, __u64 location,
			     const __u64 *words)
{
	struct dm_cor_disk_bitmap_header hdr;
	__u8 *p = block;
	__u64 w, v;

	memset(&hdr, 0, sizeof(hdr));
	hdr.kind = htole32(kind);
	hdr.blocknr = htole64(location);
	memcpy(p, &hdr, sizeof(hdr));
	for (w = 0; w < DM_COR_BITMAP_WORDS; w++) {
		v = htole64(words[w]);
		memcpy(p + sizeof(hdr) + 8 * w, &v, sizeof(v));
	}
	hdr.csum = htole32(cor_block_csum(block, DM_COR_BITMAP_CSUM_XOR));
	memcpy(p, &hdr.csum, sizeof(hdr.csum));
}

__u64 cor_count_bits(const __u64 *words, __u64 nbits)
{
	__u64 w, n = 0;

	for (w = 0; w < nbits / 64; w++)
		n += __builtin_popcountll(words[w]);
	if (nbits % 64)
		n += __builtin_popcountll(words[w] & ((1ULL << (nbits % 64)) - 1));
	return n;
}

void cor_runs_init(struct cor_runs *runs, cor_run_fn emit, void *ctx)
{
	memset(runs, 0, sizeof(*runs));
	runs->emit = emit;
	runs->ctx = ctx;
}

static void runs_close(struct cor_runs *runs, __u64 end)
{
	if (!runs->error && runs->emit(runs->ctx, runs->start, end - runs->start))
		runs->error = 1;
	runs->open = 0;
}

/* @first is a multiple of 64 (blocks hold whole words) */
void cor_runs_feed(struct cor_runs *runs, const __u64 *words, __u64 first, __u64 nbits)
{
	__u64 b = 0, w, v;
	bool set;

	while (b < nbits) {
		w = words[b / 64];
		if (!(b % 64) && nbits - b >= 64 && (w == 0 || w == ~0ULL)) {
			/* a whole word of one kind */
			set = w;
			if (set && !runs->open) {
				runs->start = first + b;
				runs->open = 1;
			} else if (!set && runs->open) {
				runs_close(runs, first + b);
			}
			runs->nr_set += set ? 64 : 0;
			b += 64;
			continue;
		}
		v = w >> (b % 64) & 1;
		if (v && !runs->open) {
			runs->start = first + b;
			runs->open = 1;
		} else if (!v && runs->open) {
			runs_close(runs, first + b);
		}
		runs->nr_set += v;
		b++;
	}
}

void cor_runs_end(struct cor_runs *runs, __u64 end)
{
	if (runs->open)
		runs_close(runs, end);
}

/* Writing a new image */

#define COR_MARKER "dm-cor metadata being written: incomplete, do not use"

int cor_write_image(struct cor_dev *out, const struct cor_geom *g,
		    const struct cor_sb *sb, const int *used, cor_fill_fn fill, void *ctx)
{
	size_t words_bytes = DM_COR_BITMAP_WORDS * sizeof(__u64);
	__u64 *bits[DM_COR_NR_BITMAPS], index, nbits, w;
	unsigned int area, kind;
	int slot, order[DM_COR_NR_SUPERBLOCKS], i, r = -1;
	__u8 *block;

	if (g->nr_metadata_blocks > out->nr_blocks) {
		cor_err("%s: too small: the layout needs %llu blocks, it has %llu", out->path,
			g->nr_metadata_blocks, out->nr_blocks);
		return -1;
	}
	block = aligned_alloc(4096, DM_COR_BLOCK_SIZE);
	bits[0] = malloc(words_bytes);
	bits[1] = malloc(words_bytes);
	if (!block || !bits[0] || !bits[1]) {
		cor_err("out of memory");
		goto out;
	}

	/* 1. Both slots hold a marker: an interrupted write leaves invalid metadata */
	memset(block, 0, DM_COR_BLOCK_SIZE);
	memcpy(block, COR_MARKER, sizeof(COR_MARKER));
	for (slot = 0; slot < DM_COR_NR_SUPERBLOCKS; slot++)
		if (cor_dev_write(out, slot, block))
			goto out;
	if (cor_dev_sync(out))
		goto out;

	/* 2. The same bitmaps into both areas */
	for (index = 0; index < g->bitmap_blocks; index++) {
		memset(bits[0], 0, words_bytes);
		memset(bits[1], 0, words_bytes);
		if (fill(ctx, index, bits[0], bits[1]))
			goto out;
		nbits = cor_block_nbits(g, index);
		for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++) {
			/* nothing past the last region */
			if (nbits % 64)
				bits[kind][nbits / 64] &= (1ULL << (nbits % 64)) - 1;
			for (w = (nbits + 63) / 64; w < DM_COR_BITMAP_WORDS; w++)
				bits[kind][w] = 0;
		}
		for (area = 0; area < DM_COR_NR_AREAS; area++) {
			for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++) {
				__u64 loc = dm_cor_bitmap_location(g->bitmap_blocks, area, kind,
								   index);

				cor_bitmap_block_encode(block, kind, loc, bits[kind]);
				if (cor_dev_write(out, loc, block))
					goto out;
			}
		}
	}
	if (cor_dev_sync(out))
		goto out;

	/* 3. The superblocks: unused slots, then the valid ones oldest first */
	for (i = 0; i < DM_COR_NR_SUPERBLOCKS; i++)
		order[i] = i;
	if (used[0] && used[1] && sb[0].generation > sb[1].generation) {
		order[0] = 1;
		order[1] = 0;
	} else if (used[0] && !used[1]) {
		order[0] = 1;
		order[1] = 0;
	}
	for (i = 0; i < DM_COR_NR_SUPERBLOCKS; i++) {
		slot = order[i];
		if (used[slot])
			cor_sb_encode(&sb[slot], block);
		else
			memset(block, 0, DM_COR_BLOCK_SIZE);
		if (cor_dev_write(out, slot, block))
			goto out;
	}
	r = cor_dev_sync(out);
out:
	free(block);
	free(bits[0]);
	free(bits[1]);
	return r;
}

/* Parsing and formatting */

void cor_format_uuid(const __u8 *uuid, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	int i, j = 0;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[j++] = '-';
		buf[j++] = hex[uuid[i] >> 4];
		buf[j++] = hex[uuid[i] & 15];
	}
	buf[j] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* 32 hex digits, dashes anywhere between pairs ignored */
int cor_parse_uuid(const char *s, __u8 *uuid)
{
	int n = 0, hi, lo;

	while (*s) {
		if (*s == '-') {
			s++;
			continue;
		}
		hi = hexval(s[0]);
		lo = hi < 0 ? -1 : hexval(s[1]);
		if (lo < 0 || n == 16)
			return -1;
		uuid[n++] = hi << 4 | lo;
		s += 2;
	}
	return n == 16 ? 0 : -1;
}

int cor_parse_u64(const char *s, __u64 *val)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, s[0] == '0' && (s[1] == 'x' || s[1] == 'X') ? 16 : 10);
	if (errno || *end || end == s)
		return -1;
	*val = v;
	return 0;
}

int cor_parse_size(const char *s, __u64 *sectors, const char **endp)
{
	__u64 v, mult;
	char *end;
	int shift = -1;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (*end) {
	case 's':
		end++;
		break;
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	case 't': case 'T':
		shift = 40;
		break;
	}
	if (shift >= 0) {
		end++;
		if (end[0] == 'i' && end[1] == 'B')
			end += 2;
		else if (end[0] == 'B')
			end++;
		mult = 1ULL << shift;
		if (v > UINT64_MAX / mult)
			return -1;
		v *= mult;
		if (v & 511)
			return -1;
		v >>= 9;
	}
	*sectors = v;
	if (endp)
		*endp = end;
	else if (*end)
		return -1;
	return 0;
}
