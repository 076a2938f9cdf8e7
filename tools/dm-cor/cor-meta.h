/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cor-meta: what the dm-cor userspace tools share.  Opening a metadata
 * device or file (refusing one that a live table holds), reading, checking
 * and writing superblocks and bitmap blocks exactly the way the kernel
 * (drivers/md/dm-cor-metadata.c) does, and writing a whole new image.
 *
 * Nothing here trusts a size or count read from the disk: every block
 * number is checked against the size of the device before it is read, and
 * the bitmaps are handled one block at a time, never as a whole.
 */
#ifndef COR_META_H
#define COR_META_H

#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <linux/types.h>

#include "dm-cor-format.h"

#define COR_TOOLS_VERSION	"0.2.0"

/* The kernel's __printf(): format checking of printf-like functions */
#define cor_printf(a, b)	__attribute__((format(printf, a, b)))

/* The name of the running tool, for messages */
extern const char *cor_prog;

/*
 * Print "PROG: ", then @path and @prefix where they are not NULL, then the
 * message and a newline on @f: what every message of the tools looks like.
 */
void cor_vmsg(FILE *f, const char *path, const char *prefix, const char *fmt, va_list ap)
	cor_printf(4, 0);
/* An error: "PROG: message" on stderr */
void cor_err(const char *fmt, ...) cor_printf(1, 2);
void cor_print_version(void);

/* Command lines */
typedef void (*cor_usage_fn)(FILE *f);

/*
 * getopt_long() with the options every tool has: -h/--help prints @usage
 * on stdout and exits 0, -V/--version prints the version and exits 0, an
 * unknown option prints @usage on stderr and exits 2.  @shortopts and
 * @longopts (at most 8) are the tool's own options; returns the next of
 * them, -1 after the last option.
 */
int cor_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
	       cor_usage_fn usage);

/*
 * The operand after the options when there is exactly one (the
 * METADATA_DEV of cor_check and cor_dump); else NULL, @usage printed on
 * stderr.
 */
const char *cor_one_operand(int argc, char **argv, cor_usage_fn usage);

/* The command line of cor_restore and cor_repair: -i INPUT -o OUTPUT [-q] */
struct cor_io_args {
	const char *input;
	const char *output;
	bool quiet;
};

/*
 * Parse it into @args; both files are needed and no operand: else "@needed
 * are needed, and nothing else", @usage on stderr, -1.
 */
int cor_io_args(int argc, char **argv, cor_usage_fn usage, const char *needed,
		struct cor_io_args *args);

/* A metadata device or image file */
struct cor_dev {
	const char *path;
	int fd;
	int is_blk;
	int writable;
	int created;		/* opened with COR_OPEN_CREATE and did not exist */
	__u64 size;		/* bytes */
	__u64 nr_blocks;	/* whole 4 KiB blocks */
};

#define COR_OPEN_WRITE		0x1
#define COR_OPEN_CREATE		0x2	/* a regular file that may not exist yet */

int cor_dev_open(struct cor_dev *dev, const char *path, unsigned int flags);
int cor_dev_close(struct cor_dev *dev);
int cor_dev_read(struct cor_dev *dev, __u64 blocknr, void *block);
int cor_dev_write(struct cor_dev *dev, __u64 blocknr, const void *block);
int cor_dev_sync(struct cor_dev *dev);
int cor_dev_set_size(struct cor_dev *dev, __u64 nr_blocks);
/*
 * Room for @nr_blocks on an output: a file that cor_dev_open() created is
 * made that long, anything else must be that long already.  0 or -1
 * (reported).
 */
int cor_dev_reserve(struct cor_dev *out, __u64 nr_blocks);

__u32 cor_block_csum(const void *block, __u32 xor);
bool cor_block_is_zero(const void *block);

/* A superblock in CPU byte order */
struct cor_sb {
	__u32 csum;
	__u32 flags;
	__u64 magic;
	__u32 version;
	__u32 block_sectors;
	__u64 generation;
	__u64 region_sectors;
	__u64 target_sectors;
	__u64 nr_regions;
	__u64 bitmap_blocks;
	__u64 nr_metadata_blocks;
	__u32 active_area;
	__u32 reserved;
	__u8 uuid[16];
};

void cor_sb_decode(const void *block, struct cor_sb *sb);
void cor_sb_encode(const struct cor_sb *sb, void *block);

enum cor_slot_state {
	COR_SLOT_ZERO,		/* all zeroes */
	COR_SLOT_VALID,		/* magic and checksum right */
	COR_SLOT_BAD_MAGIC,
	COR_SLOT_BAD_CSUM,
};

const char *cor_slot_state_name(enum cor_slot_state state);

struct cor_slots {
	enum cor_slot_state state[DM_COR_NR_SUPERBLOCKS];
	struct cor_sb sb[DM_COR_NR_SUPERBLOCKS];
	int newest;		/* the slot the kernel loads, -1 if none */
};

/* Read both slots; returns -1 on an I/O error (reported) */
int cor_read_slots(struct cor_dev *dev, struct cor_slots *slots);
int cor_newest_slot(const enum cor_slot_state *state, const struct cor_sb *sb);

/* The geometry a superblock implies, all of it checked */
struct cor_geom {
	__u64 region_sectors;
	__u64 target_sectors;
	__u64 nr_regions;
	__u64 bitmap_blocks;
	__u64 nr_metadata_blocks;
};

/*
 * Check what the kernel checks of the superblock it loads, except the
 * needs-check flag (the callers decide about that), against a device of
 * @dev_blocks blocks (0: no size check).  Each problem goes to @report;
 * returns their number, and fills @g when there is none.
 */
typedef void (*cor_report_fn)(void *ctx, const char *fmt, ...) cor_printf(2, 3);
int cor_sb_check(const struct cor_sb *sb, __u64 dev_blocks, struct cor_geom *g,
		 cor_report_fn report, void *ctx);
int cor_geom_compute(__u64 region_sectors, __u64 target_sectors, struct cor_geom *g,
		     const char **why);

/* Bitmap blocks */
enum cor_blk_state {
	COR_BLK_OK,
	COR_BLK_IO,		/* could not be read (reported) */
	COR_BLK_CSUM,		/* checksum mismatch */
	COR_BLK_PLACE,		/* wrong kind or block number */
	COR_BLK_PAST_END,	/* bits set past the last region */
};

const char *cor_blk_state_name(enum cor_blk_state state);
/* "hydrated" or "dirty" */
const char *cor_bitmap_name(unsigned int kind);

/* How many regions block @index of a bitmap covers */
__u64 cor_block_nbits(const struct cor_geom *g, __u64 index);

/* Read and check block @index of bitmap @kind in @area into @words */
enum cor_blk_state cor_read_bitmap_block(struct cor_dev *dev, const struct cor_geom *g,
					 unsigned int area, unsigned int kind, __u64 index,
					 __u64 *words);
void cor_bitmap_block_encode(void *block, unsigned int kind, __u64 location,
			     const __u64 *words);

static inline bool cor_test_bit(const __u64 *words, __u64 bit)
{
	return words[bit / 64] >> (bit % 64) & 1;
}

/* Count the set bits of the first @nbits bits */
__u64 cor_count_bits(const __u64 *words, __u64 nbits);

/* Runs of set bits, fed one bitmap block after the other */
typedef int (*cor_run_fn)(void *ctx, __u64 first, __u64 count);

struct cor_runs {
	cor_run_fn emit;
	void *ctx;
	__u64 start;		/* first region of the open run */
	int open;
	__u64 nr_set;
	int error;		/* an emit returned non-zero */
};

void cor_runs_init(struct cor_runs *runs, cor_run_fn emit, void *ctx);
void cor_runs_feed(struct cor_runs *runs, const __u64 *words, __u64 first, __u64 nbits);
void cor_runs_end(struct cor_runs *runs, __u64 end);

/*
 * Write a whole new image: both areas get the same bitmaps, block by
 * block from @fill, then the superblocks.  @sb[slot] is written when
 * @used[slot], else the slot is zeroed.  Until the superblocks are
 * written both slots hold a marker that neither the kernel nor cor_check
 * accepts, so an interrupted write never leaves metadata that loads (an
 * all-zero pair would be formatted, forgetting every dirty region).
 */
typedef int (*cor_fill_fn)(void *ctx, __u64 index, __u64 *hydrated, __u64 *dirty);
int cor_write_image(struct cor_dev *out, const struct cor_geom *g,
		    const struct cor_sb *sb, const int *used, cor_fill_fn fill, void *ctx);

/* Fill in a superblock for @g */
void cor_sb_init(struct cor_sb *sb, const struct cor_geom *g, __u64 generation,
		 unsigned int area, __u32 flags, const __u8 *uuid);

void cor_format_uuid(const __u8 *uuid, char *buf);	/* 37 bytes */
int cor_parse_uuid(const char *s, __u8 *uuid);

/* Parse an unsigned decimal or 0x hex number, the whole string */
int cor_parse_u64(const char *s, __u64 *val);

/*
 * A size: a number of sectors (optional "s" suffix), or of bytes with a
 * K, M, G or T suffix (powers of 1024; "KiB", "KB" accepted) that must be
 * a multiple of 512.  With @endp, *@endp points after what was parsed;
 * without it the whole string must be the size.  0 or -1.
 */
int cor_parse_size(const char *s, __u64 *sectors, const char **endp);

#endif /* COR_META_H */
