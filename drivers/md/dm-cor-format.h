/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-cor on-disk metadata format, shared by the kernel target and the
 * userspace tools (tools/dm-cor/).  Every field is little-endian.
 *
 * The metadata device is an array of 4 KiB blocks:
 *
 *   block 0               superblock slot 0
 *   block 1               superblock slot 1
 *   area 0: 2 * B blocks  hydrated bitmap (B blocks), then dirty bitmap
 *   area 1: 2 * B blocks  the same, shadow copy
 *
 * where B = DIV_ROUND_UP(nr_regions, DM_COR_BITS_PER_BLOCK).  A commit
 * writes the bitmaps into the area that the newest superblock does not
 * use, flushes, then writes a superblock with generation + 1 into the
 * other slot and flushes again.  The newest superblock whose checksum is
 * valid wins on load, so a torn write can only ever lose the commit that
 * was in progress.
 *
 * Checksums are CRC32C (Castagnoli) started at ~0 without the final
 * inversion (the kernel's crc32c(~0, ...)), over the block from byte 4 to
 * its end, xor-ed with a per-block-type constant.
 */
#ifndef DM_COR_FORMAT_H
#define DM_COR_FORMAT_H

#include <linux/types.h>
#ifdef __KERNEL__
#include <linux/build_bug.h>
#else
#include <assert.h>
#endif

#define DM_COR_BLOCK_SIZE		4096
#define DM_COR_BLOCK_SECTORS		8
#define DM_COR_NR_SUPERBLOCKS		2

/* "DMCORSB1" read as a little-endian 64-bit number */
#define DM_COR_SB_MAGIC			0x314253524f434d44ULL
#define DM_COR_METADATA_VERSION		1

#define DM_COR_SB_CSUM_XOR		0x0c0f5eedU
#define DM_COR_BITMAP_CSUM_XOR		0x0b17b17bU

/* Superblock flags */
#define DM_COR_SB_NEEDS_CHECK		0x1U
#define DM_COR_SB_KNOWN_FLAGS		DM_COR_SB_NEEDS_CHECK

/* Bitmap kinds, in the order they are laid out inside an area */
#define DM_COR_BITMAP_HYDRATED		0
#define DM_COR_BITMAP_DIRTY		1
#define DM_COR_NR_BITMAPS		2

#define DM_COR_NR_AREAS			2

struct dm_cor_disk_superblock {
	__le32 csum;
	__le32 flags;
	__le64 magic;
	__le32 version;
	__le32 block_sectors;		/* DM_COR_BLOCK_SECTORS */
	__le64 generation;		/* incremented by every commit */
	__le64 region_sectors;
	__le64 target_sectors;		/* length of the cor device */
	__le64 nr_regions;
	__le64 bitmap_blocks;		/* blocks per bitmap (B) */
	__le64 nr_metadata_blocks;	/* blocks the layout uses */
	__le32 active_area;		/* area holding this commit's bitmaps */
	__le32 reserved;
	__u8 uuid[16];			/* random, set when formatted */
};

struct dm_cor_disk_bitmap_header {
	__le32 csum;
	__le32 kind;			/* DM_COR_BITMAP_* */
	__le64 blocknr;			/* this block's own location */
};

/* Bitmap words are __le64, bit i of word w describes region w * 64 + i */
#define DM_COR_BITMAP_WORDS \
	((DM_COR_BLOCK_SIZE - sizeof(struct dm_cor_disk_bitmap_header)) / 8)
#define DM_COR_BITS_PER_BLOCK		(DM_COR_BITMAP_WORDS * 64)

static_assert(sizeof(struct dm_cor_disk_superblock) == 96, "superblock layout");
static_assert(sizeof(struct dm_cor_disk_bitmap_header) == 16, "bitmap header layout");
static_assert(DM_COR_BITS_PER_BLOCK == 32640, "bitmap block layout");

static inline __u64 dm_cor_bitmap_blocks(__u64 nr_regions)
{
	return (nr_regions + DM_COR_BITS_PER_BLOCK - 1) / DM_COR_BITS_PER_BLOCK;
}

static inline __u64 dm_cor_metadata_blocks(__u64 nr_regions)
{
	return DM_COR_NR_SUPERBLOCKS +
	       DM_COR_NR_AREAS * DM_COR_NR_BITMAPS * dm_cor_bitmap_blocks(nr_regions);
}

/* Location of block @index of bitmap @kind in @area */
static inline __u64 dm_cor_bitmap_location(__u64 bitmap_blocks, unsigned int area,
					   unsigned int kind, __u64 index)
{
	return DM_COR_NR_SUPERBLOCKS +
	       ((__u64)area * DM_COR_NR_BITMAPS + kind) * bitmap_blocks + index;
}

#endif /* DM_COR_FORMAT_H */
