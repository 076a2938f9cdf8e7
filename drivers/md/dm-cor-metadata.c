// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-cor metadata: two in-core bitmaps, committed to a metadata device
 * through dm-bufio with a shadow area per commit.  The layout and the
 * commit protocol are described in dm-cor-format.h.
 */

#include <linux/bitmap.h>
#include <linux/bitops.h>
#include <linux/blkdev.h>
#include <linux/crc32c.h>
#include <linux/device-mapper.h>
#include <linux/dm-bufio.h>
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/random.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>

#include "dm-cor-format.h"
#include "dm-cor-metadata.h"

#define DM_MSG_PREFIX "cor metadata"

static_assert(DM_COR_METADATA_BLOCK_SECTORS == DM_COR_BLOCK_SECTORS);

/* Regions marked per lock hold, so a huge discard cannot stall interrupts */
#define MARK_CHUNK_REGIONS	(64UL * 1024)

struct dm_cor_metadata {
	struct block_device *bdev;	/* NULL for volatile metadata */
	struct dm_bufio_client *bufio;

	sector_t target_sectors;
	sector_t region_sectors;
	unsigned long nr_regions;
	u64 bitmap_blocks;
	u64 nr_blocks_used;
	u64 nr_blocks_total;

	/*
	 * Protects the bits of @bitmaps (readers may test bits without it),
	 * @nr_set, @changed_blocks and @changed.
	 */
	spinlock_t lock;
	unsigned long *bitmaps[DM_COR_NR_BITMAPS];
	unsigned long nr_set[DM_COR_NR_BITMAPS];

	/*
	 * Every region is hydrated and the hydrated bitmap has been freed
	 * (bitmaps[HYDRATED] is NULL once readers are done with it: lockless
	 * readers test it under rcu_read_lock()).  Set under @lock.
	 */
	bool all_hydrated;

	/*
	 * Bitmap blocks (index kind * bitmap_blocks + i) changed since the
	 * last commit, and during the interval before it.  The inactive area
	 * was last written two commits ago, so a commit rewrites both sets.
	 */
	unsigned long *changed_blocks;	/* NULL for volatile metadata */
	unsigned long *changed_before;
	bool changed;

	/* Only the (serialised) committer and the loader use these two */
	unsigned long *commit_blocks;	/* blocks to write in this commit */
	u64 *words;			/* one bitmap block in CPU order */

	/* Committed state; only the (serialised) committer changes these */
	u64 generation;
	unsigned int active_area;
	unsigned int sb_slot;		/* slot of the newest superblock */
	u32 sb_flags;
	u8 uuid[16];
	bool failed;			/* an I/O error happened: no more commits */
};

static u32 block_csum(const void *block, u32 xor)
{
	return crc32c(~0U, block + sizeof(__le32), DM_COR_BLOCK_SIZE - sizeof(__le32)) ^ xor;
}

bool dm_cor_metadata_is_volatile(struct dm_cor_metadata *cmd)
{
	return !cmd->bdev;
}

bool dm_cor_metadata_failed(struct dm_cor_metadata *cmd)
{
	return READ_ONCE(cmd->failed);
}

bool dm_cor_region_hydrated(struct dm_cor_metadata *cmd, unsigned long region)
{
	unsigned long *bitmap;
	bool hydrated = true;

	/* Pairs with the release in dm_cor_metadata_release_hydrated() */
	if (smp_load_acquire(&cmd->all_hydrated))
		return true;
	rcu_read_lock();
	bitmap = READ_ONCE(cmd->bitmaps[DM_COR_BITMAP_HYDRATED]);
	if (bitmap)
		hydrated = test_bit(region, bitmap);
	rcu_read_unlock();
	return hydrated;
}

bool dm_cor_region_dirty(struct dm_cor_metadata *cmd, unsigned long region)
{
	return test_bit(region, cmd->bitmaps[DM_COR_BITMAP_DIRTY]);
}

unsigned long dm_cor_nr_regions(struct dm_cor_metadata *cmd)
{
	return cmd->nr_regions;
}

unsigned long dm_cor_nr_hydrated(struct dm_cor_metadata *cmd)
{
	return READ_ONCE(cmd->nr_set[DM_COR_BITMAP_HYDRATED]);
}

unsigned long dm_cor_nr_dirty(struct dm_cor_metadata *cmd)
{
	return READ_ONCE(cmd->nr_set[DM_COR_BITMAP_DIRTY]);
}

unsigned long dm_cor_find_next_region(struct dm_cor_metadata *cmd, bool dirty,
				      bool set, unsigned long start,
				      unsigned long end)
{
	unsigned long *bitmap, r;

	if (start >= end)
		return end;
	/* Pairs with the release in dm_cor_metadata_release_hydrated() */
	if (!dirty && smp_load_acquire(&cmd->all_hydrated))
		return set ? start : end;

	rcu_read_lock();
	bitmap = READ_ONCE(cmd->bitmaps[dirty ? DM_COR_BITMAP_DIRTY : DM_COR_BITMAP_HYDRATED]);
	if (!bitmap)
		r = set ? start : end;
	else
		r = set ? find_next_bit(bitmap, end, start) :
			  find_next_zero_bit(bitmap, end, start);
	rcu_read_unlock();
	return r;
}

void dm_cor_metadata_release_hydrated(struct dm_cor_metadata *cmd)
{
	unsigned long *bitmap;

	spin_lock_irq(&cmd->lock);
	if (cmd->all_hydrated || cmd->nr_set[DM_COR_BITMAP_HYDRATED] != cmd->nr_regions) {
		spin_unlock_irq(&cmd->lock);
		return;
	}
	/* Readers that see the flag never touch the bitmap again */
	smp_store_release(&cmd->all_hydrated, true);
	spin_unlock_irq(&cmd->lock);

	/* Lockless readers that missed the flag are done after a grace period */
	synchronize_rcu();
	bitmap = cmd->bitmaps[DM_COR_BITMAP_HYDRATED];
	WRITE_ONCE(cmd->bitmaps[DM_COR_BITMAP_HYDRATED], NULL);
	kvfree(bitmap);
}

bool dm_cor_metadata_changed(struct dm_cor_metadata *cmd)
{
	return cmd->bdev && READ_ONCE(cmd->changed);
}

void dm_cor_metadata_usage(struct dm_cor_metadata *cmd, u64 *used, u64 *total)
{
	*used = cmd->nr_blocks_used;
	*total = cmd->nr_blocks_total;
}

/* Caller holds cmd->lock.  Sets the clear bits of a range, returns how many. */
static unsigned long __set_bits(struct dm_cor_metadata *cmd, unsigned int kind,
				unsigned long start, unsigned long end)
{
	unsigned long *bitmap = cmd->bitmaps[kind];
	unsigned long zero, one, first_block, last_block, added = 0;

	zero = find_next_zero_bit(bitmap, end, start);
	while (zero < end) {
		one = find_next_bit(bitmap, end, zero);
		bitmap_set(bitmap, zero, one - zero);
		added += one - zero;

		if (cmd->changed_blocks) {
			first_block = zero / DM_COR_BITS_PER_BLOCK;
			last_block = (one - 1) / DM_COR_BITS_PER_BLOCK;
			bitmap_set(cmd->changed_blocks,
				   kind * cmd->bitmap_blocks + first_block,
				   last_block - first_block + 1);
		}

		zero = find_next_zero_bit(bitmap, end, one);
	}

	cmd->nr_set[kind] += added;
	return added;
}

void dm_cor_mark_regions(struct dm_cor_metadata *cmd, unsigned long start,
			 unsigned long nr, bool dirty)
{
	unsigned long end = start + nr, chunk_end, flags;

	while (start < end) {
		chunk_end = min(end, start + MARK_CHUNK_REGIONS);

		spin_lock_irqsave(&cmd->lock, flags);
		/* Hydrated first: a set dirty bit always implies a set hydrated bit */
		if (!cmd->all_hydrated &&
		    __set_bits(cmd, DM_COR_BITMAP_HYDRATED, start, chunk_end))
			cmd->changed = true;
		if (dirty && __set_bits(cmd, DM_COR_BITMAP_DIRTY, start, chunk_end))
			cmd->changed = true;
		spin_unlock_irqrestore(&cmd->lock, flags);

		start = chunk_end;
	}
}

/* The words of a bitmap block whose first @nbits bits are all set */
static void fill_words_all_set(u64 *words, unsigned long nbits)
{
	unsigned long i;

	for (i = 0; i < nbits / 64; i++)
		words[i] = ~0ULL;
	if (nbits % 64)
		words[i] = GENMASK_ULL(nbits % 64 - 1, 0);
}

/*
 * Copy bitmap block @index of @kind into a disk block.  The words are
 * copied under cmd->lock so that a dirty bit and the hydrated bit set
 * with it are seen in the order they were set (dirty blocks are copied
 * first, see pre_commit).
 */
static void fill_bitmap_block(struct dm_cor_metadata *cmd, void *block,
			      unsigned int kind, u64 index, u64 location)
{
	struct dm_cor_disk_bitmap_header *hdr = block;
	__le64 *words = block + sizeof(*hdr);
	unsigned long first = index * DM_COR_BITS_PER_BLOCK;
	unsigned long nbits = min_t(unsigned long, DM_COR_BITS_PER_BLOCK,
				    cmd->nr_regions - first);
	unsigned int i;

	memset(cmd->words, 0, DM_COR_BITMAP_WORDS * sizeof(u64));
	spin_lock_irq(&cmd->lock);
	if (kind == DM_COR_BITMAP_HYDRATED && cmd->all_hydrated)
		fill_words_all_set(cmd->words, nbits);
	else
		bitmap_to_arr64(cmd->words, cmd->bitmaps[kind] + BIT_WORD(first), nbits);
	spin_unlock_irq(&cmd->lock);

	for (i = 0; i < DM_COR_BITMAP_WORDS; i++)
		words[i] = cpu_to_le64(cmd->words[i]);

	hdr->kind = cpu_to_le32(kind);
	hdr->blocknr = cpu_to_le64(location);
	hdr->csum = cpu_to_le32(block_csum(block, DM_COR_BITMAP_CSUM_XOR));
}

int dm_cor_metadata_pre_commit(struct dm_cor_metadata *cmd)
{
	unsigned int target_area = cmd->active_area ^ 1;
	unsigned long nr_blocks = DM_COR_NR_BITMAPS * cmd->bitmap_blocks;
	int kinds[] = { DM_COR_BITMAP_DIRTY, DM_COR_BITMAP_HYDRATED };
	unsigned long i, dirty, hydrated;
	struct dm_buffer *buf;
	unsigned int k;
	void *block;

	if (!cmd->bdev)
		return 0;
	if (cmd->failed)
		return -EIO;

	spin_lock_irq(&cmd->lock);
	bitmap_or(cmd->commit_blocks, cmd->changed_blocks, cmd->changed_before, nr_blocks);
	bitmap_copy(cmd->changed_before, cmd->changed_blocks, nr_blocks);
	bitmap_zero(cmd->changed_blocks, nr_blocks);
	cmd->changed = false;
	spin_unlock_irq(&cmd->lock);

	/*
	 * A region marked from here on can show up in a dirty block copied
	 * below: the hydrated block covering it must then be written too,
	 * after it, or the area would hold a dirty bit without its hydrated
	 * bit.  Marks set both bits together, dirty blocks are copied first.
	 */
	dirty = DM_COR_BITMAP_DIRTY * cmd->bitmap_blocks;
	hydrated = DM_COR_BITMAP_HYDRATED * cmd->bitmap_blocks;
	i = dirty;
	for_each_set_bit_from(i, cmd->commit_blocks, dirty + cmd->bitmap_blocks)
		__set_bit(hydrated + i - dirty, cmd->commit_blocks);

	for (k = 0; k < ARRAY_SIZE(kinds); k++) {
		unsigned long base = kinds[k] * cmd->bitmap_blocks;

		i = base;
		for_each_set_bit_from(i, cmd->commit_blocks, base + cmd->bitmap_blocks) {
			u64 location = dm_cor_bitmap_location(cmd->bitmap_blocks, target_area,
							      kinds[k], i - base);

			block = dm_bufio_new(cmd->bufio, location, &buf);
			if (IS_ERR(block)) {
				cmd->failed = true;
				return PTR_ERR(block);
			}
			fill_bitmap_block(cmd, block, kinds[k], i - base, location);
			dm_bufio_mark_buffer_dirty(buf);
			dm_bufio_release(buf);
		}
	}

	return 0;
}

static void fill_superblock(struct dm_cor_metadata *cmd, void *block, u64 generation,
			    unsigned int area, u32 flags)
{
	struct dm_cor_disk_superblock *sb = block;

	memset(block, 0, DM_COR_BLOCK_SIZE);
	sb->flags = cpu_to_le32(flags);
	sb->magic = cpu_to_le64(DM_COR_SB_MAGIC);
	sb->version = cpu_to_le32(DM_COR_METADATA_VERSION);
	sb->block_sectors = cpu_to_le32(DM_COR_BLOCK_SECTORS);
	sb->generation = cpu_to_le64(generation);
	sb->region_sectors = cpu_to_le64(cmd->region_sectors);
	sb->target_sectors = cpu_to_le64(cmd->target_sectors);
	sb->nr_regions = cpu_to_le64(cmd->nr_regions);
	sb->bitmap_blocks = cpu_to_le64(cmd->bitmap_blocks);
	sb->nr_metadata_blocks = cpu_to_le64(cmd->nr_blocks_used);
	sb->active_area = cpu_to_le32(area);
	memcpy(sb->uuid, cmd->uuid, sizeof(sb->uuid));
	sb->csum = cpu_to_le32(block_csum(block, DM_COR_SB_CSUM_XOR));
}

/* Write a superblock into the spare slot and flush it. */
static int write_superblock(struct dm_cor_metadata *cmd, unsigned int area, u32 flags)
{
	unsigned int slot = cmd->sb_slot ^ 1;
	struct dm_buffer *buf;
	void *block;
	int r;

	block = dm_bufio_new(cmd->bufio, slot, &buf);
	if (IS_ERR(block))
		return PTR_ERR(block);
	fill_superblock(cmd, block, cmd->generation + 1, area, flags);
	dm_bufio_mark_buffer_dirty(buf);
	dm_bufio_release(buf);

	r = dm_bufio_write_dirty_buffers(cmd->bufio);
	if (r)
		return r;

	cmd->generation++;
	cmd->sb_slot = slot;
	cmd->active_area = area;
	cmd->sb_flags = flags;
	return 0;
}

int dm_cor_metadata_commit(struct dm_cor_metadata *cmd)
{
	int r;

	if (!cmd->bdev)
		return 0;
	if (cmd->failed)
		return -EIO;

	/* Bitmaps first, flushed, so the superblock never points at torn blocks */
	r = dm_bufio_write_dirty_buffers(cmd->bufio);
	if (!r)
		r = write_superblock(cmd, cmd->active_area ^ 1, cmd->sb_flags);
	if (r) {
		cmd->failed = true;
		return r;
	}

	/* The bitmaps are never read back while the device is live */
	dm_bufio_forget_buffers(cmd->bufio, DM_COR_NR_SUPERBLOCKS,
				cmd->nr_blocks_used - DM_COR_NR_SUPERBLOCKS);
	return 0;
}

int dm_cor_metadata_set_needs_check(struct dm_cor_metadata *cmd)
{
	int r;

	if (!cmd->bdev)
		return 0;

	/* Drop whatever a failed commit left dirty in the cache */
	dm_bufio_forget_buffers(cmd->bufio, 0, cmd->nr_blocks_used);
	r = write_superblock(cmd, cmd->active_area, cmd->sb_flags | DM_COR_SB_NEEDS_CHECK);
	cmd->failed = true;
	return r;
}

/* Superblock validation */

enum sb_state { SB_ZERO, SB_VALID, SB_INVALID };

static enum sb_state check_superblock(const void *block)
{
	const struct dm_cor_disk_superblock *sb = block;

	if (!memchr_inv(block, 0, DM_COR_BLOCK_SIZE))
		return SB_ZERO;
	if (le64_to_cpu(sb->magic) != DM_COR_SB_MAGIC ||
	    le32_to_cpu(sb->csum) != block_csum(block, DM_COR_SB_CSUM_XOR))
		return SB_INVALID;
	return SB_VALID;
}

static int validate_superblock(struct dm_cor_metadata *cmd,
			       const struct dm_cor_disk_superblock *sb,
			       char **error)
{
	if (le32_to_cpu(sb->version) != DM_COR_METADATA_VERSION) {
		*error = "Unsupported metadata version";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->flags) & ~DM_COR_SB_KNOWN_FLAGS) {
		*error = "Unknown metadata superblock flags";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->flags) & DM_COR_SB_NEEDS_CHECK) {
		*error = "Metadata needs checking: run cor_check and cor_repair";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->block_sectors) != DM_COR_BLOCK_SECTORS) {
		*error = "Unsupported metadata block size";
		return -EINVAL;
	}
	if (le64_to_cpu(sb->region_sectors) != cmd->region_sectors) {
		DMERR("Region size %llu differs from the metadata's %llu sectors",
		      (unsigned long long)cmd->region_sectors,
		      le64_to_cpu(sb->region_sectors));
		*error = "Region size differs from the metadata";
		return -EINVAL;
	}
	if (le64_to_cpu(sb->target_sectors) != cmd->target_sectors) {
		DMERR("Device length %llu differs from the metadata's %llu sectors",
		      (unsigned long long)cmd->target_sectors,
		      le64_to_cpu(sb->target_sectors));
		*error = "Device length differs from the metadata";
		return -EINVAL;
	}
	if (le64_to_cpu(sb->nr_regions) != cmd->nr_regions ||
	    le64_to_cpu(sb->bitmap_blocks) != cmd->bitmap_blocks ||
	    le64_to_cpu(sb->nr_metadata_blocks) != cmd->nr_blocks_used ||
	    le32_to_cpu(sb->active_area) >= DM_COR_NR_AREAS) {
		*error = "Metadata superblock geometry is inconsistent";
		return -EINVAL;
	}
	return 0;
}

static int read_superblocks(struct dm_cor_metadata *cmd, bool *format,
			    char **error)
{
	struct dm_cor_disk_superblock sbs[DM_COR_NR_SUPERBLOCKS];
	enum sb_state states[DM_COR_NR_SUPERBLOCKS];
	int newest = -1, slot, r;
	struct dm_buffer *buf;
	void *block;

	for (slot = 0; slot < DM_COR_NR_SUPERBLOCKS; slot++) {
		block = dm_bufio_read(cmd->bufio, slot, &buf);
		if (IS_ERR(block)) {
			*error = "Cannot read the metadata superblock";
			return PTR_ERR(block);
		}
		states[slot] = check_superblock(block);
		memcpy(&sbs[slot], block, sizeof(sbs[slot]));
		dm_bufio_release(buf);

		if (states[slot] == SB_VALID &&
		    (newest < 0 || le64_to_cpu(sbs[slot].generation) >
				   le64_to_cpu(sbs[newest].generation)))
			newest = slot;
	}

	*format = states[0] == SB_ZERO && states[1] == SB_ZERO;
	if (*format)
		return 0;
	if (newest < 0) {
		*error = "Metadata device is neither zeroed nor valid dm-cor metadata";
		return -EINVAL;
	}

	/*
	 * A torn superblock write leaves the slot being written invalid, and
	 * the other slot is then the newest commit; say so, as bit rot in the
	 * newest slot would look the same.
	 */
	if (states[newest ^ 1] == SB_INVALID)
		DMWARN("superblock slot %d invalid (torn or damaged): using slot %d, gen %llu",
		       newest ^ 1, newest, le64_to_cpu(sbs[newest].generation));

	r = validate_superblock(cmd, &sbs[newest], error);
	if (r)
		return r;
	/* The next commit could not write a newer generation */
	if (le64_to_cpu(sbs[newest].generation) == U64_MAX) {
		*error = "Metadata superblock generation is exhausted";
		return -EINVAL;
	}

	cmd->sb_slot = newest;
	cmd->generation = le64_to_cpu(sbs[newest].generation);
	cmd->active_area = le32_to_cpu(sbs[newest].active_area);
	cmd->sb_flags = le32_to_cpu(sbs[newest].flags);
	memcpy(cmd->uuid, sbs[newest].uuid, sizeof(cmd->uuid));
	return 0;
}

static int load_bitmap_block(struct dm_cor_metadata *cmd, unsigned int kind, u64 index,
			     char **error)
{
	u64 location = dm_cor_bitmap_location(cmd->bitmap_blocks, cmd->active_area, kind, index);
	unsigned long first = index * DM_COR_BITS_PER_BLOCK;
	unsigned long nbits = min_t(unsigned long, DM_COR_BITS_PER_BLOCK,
				    cmd->nr_regions - first);
	const struct dm_cor_disk_bitmap_header *hdr;
	u64 *tmp = cmd->words;
	const __le64 *words;
	struct dm_buffer *buf;
	unsigned int i;
	void *block;

	block = dm_bufio_read(cmd->bufio, location, &buf);
	if (IS_ERR(block)) {
		*error = "Cannot read a metadata bitmap block";
		return PTR_ERR(block);
	}
	hdr = block;
	words = block + sizeof(*hdr);
	if (le32_to_cpu(hdr->csum) != block_csum(block, DM_COR_BITMAP_CSUM_XOR) ||
	    le32_to_cpu(hdr->kind) != kind || le64_to_cpu(hdr->blocknr) != location) {
		dm_bufio_release(buf);
		DMERR("Bitmap block %llu is corrupt", location);
		*error = "Metadata bitmap block checksum or location mismatch";
		return -EILSEQ;
	}
	for (i = 0; i < DM_COR_BITMAP_WORDS; i++)
		tmp[i] = le64_to_cpu(words[i]);
	dm_bufio_release(buf);

	/* Bits past the last region must be clear */
	for (i = nbits; i < DM_COR_BITS_PER_BLOCK; i++) {
		if (tmp[i / 64] & (1ULL << (i % 64))) {
			*error = "Metadata bitmap has bits set past the last region";
			return -EILSEQ;
		}
	}
	bitmap_from_arr64(cmd->bitmaps[kind] + BIT_WORD(first), tmp, nbits);
	cmd->nr_set[kind] += bitmap_weight(cmd->bitmaps[kind] + BIT_WORD(first), nbits);
	return 0;
}

static int load_bitmaps(struct dm_cor_metadata *cmd, char **error)
{
	unsigned long first, nbits;
	unsigned int kind;
	u64 i;
	int r;

	for (i = 0; i < cmd->bitmap_blocks; i++) {
		for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++) {
			r = load_bitmap_block(cmd, kind, i, error);
			if (r)
				return r;
		}

		first = i * DM_COR_BITS_PER_BLOCK;
		nbits = min_t(unsigned long, DM_COR_BITS_PER_BLOCK, cmd->nr_regions - first);
		if (!bitmap_subset(cmd->bitmaps[DM_COR_BITMAP_DIRTY] + BIT_WORD(first),
				   cmd->bitmaps[DM_COR_BITMAP_HYDRATED] + BIT_WORD(first),
				   nbits)) {
			*error = "Metadata marks regions dirty that are not hydrated";
			return -EILSEQ;
		}
	}

	dm_bufio_forget_buffers(cmd->bufio, DM_COR_NR_SUPERBLOCKS,
				cmd->nr_blocks_used - DM_COR_NR_SUPERBLOCKS);
	return 0;
}

/* Write the empty state to both areas, then the first superblock. */
static int format_metadata(struct dm_cor_metadata *cmd, char **error)
{
	unsigned long nr_blocks = DM_COR_NR_BITMAPS * cmd->bitmap_blocks;
	unsigned int area;
	int r;

	get_random_bytes(cmd->uuid, sizeof(cmd->uuid));
	cmd->generation = 0;
	cmd->sb_flags = 0;
	cmd->sb_slot = 1;

	for (area = 0; area < DM_COR_NR_AREAS; area++) {
		cmd->active_area = area ^ 1;
		bitmap_fill(cmd->changed_blocks, nr_blocks);
		r = dm_cor_metadata_pre_commit(cmd);
		if (!r)
			r = dm_cor_metadata_commit(cmd);
		if (r) {
			*error = "Cannot format the metadata device";
			return r;
		}
	}

	/* Both areas now hold the same (empty) state */
	bitmap_zero(cmd->changed_before, nr_blocks);
	return 0;
}

static void free_bitmaps(struct dm_cor_metadata *cmd)
{
	unsigned int kind;

	for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++)
		kvfree(cmd->bitmaps[kind]);
	kvfree(cmd->changed_blocks);
	kvfree(cmd->changed_before);
	kvfree(cmd->commit_blocks);
	kfree(cmd->words);
}

static int alloc_bitmaps(struct dm_cor_metadata *cmd)
{
	unsigned long nr_blocks = DM_COR_NR_BITMAPS * cmd->bitmap_blocks;
	size_t region_bytes = BITS_TO_LONGS(cmd->nr_regions) * sizeof(long);
	size_t block_bytes = BITS_TO_LONGS(nr_blocks) * sizeof(long);
	unsigned int kind;

	for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++) {
		cmd->bitmaps[kind] = kvzalloc(region_bytes, GFP_KERNEL);
		if (!cmd->bitmaps[kind])
			return -ENOMEM;
	}
	if (!cmd->bdev)
		return 0;

	cmd->changed_blocks = kvzalloc(block_bytes, GFP_KERNEL);
	cmd->changed_before = kvzalloc(block_bytes, GFP_KERNEL);
	cmd->commit_blocks = kvzalloc(block_bytes, GFP_KERNEL);
	cmd->words = kcalloc(DM_COR_BITMAP_WORDS, sizeof(u64), GFP_KERNEL);
	if (!cmd->changed_blocks || !cmd->changed_before || !cmd->commit_blocks ||
	    !cmd->words)
		return -ENOMEM;
	return 0;
}

struct dm_cor_metadata *dm_cor_metadata_open(struct block_device *bdev,
					     sector_t target_sectors,
					     sector_t region_sectors,
					     char **error)
{
	struct dm_cor_metadata *cmd;
	bool format;
	int r;

	cmd = kzalloc(sizeof(*cmd), GFP_KERNEL);
	if (!cmd) {
		*error = "Cannot allocate metadata handle";
		return ERR_PTR(-ENOMEM);
	}
	spin_lock_init(&cmd->lock);
	cmd->bdev = bdev;
	cmd->target_sectors = target_sectors;
	cmd->region_sectors = region_sectors;
	cmd->nr_regions = (target_sectors + region_sectors - 1) >> __ffs(region_sectors);
	cmd->bitmap_blocks = dm_cor_bitmap_blocks(cmd->nr_regions);

	if (bdev) {
		cmd->nr_blocks_used = dm_cor_metadata_blocks(cmd->nr_regions);
		cmd->nr_blocks_total = bdev_nr_sectors(bdev) >> ilog2(DM_COR_BLOCK_SECTORS);
		if (cmd->nr_blocks_used > cmd->nr_blocks_total) {
			DMERR("Metadata device too small: need %llu sectors, have %llu",
			      cmd->nr_blocks_used * DM_COR_BLOCK_SECTORS,
			      (unsigned long long)bdev_nr_sectors(bdev));
			*error = "Metadata device too small";
			r = -EINVAL;
			goto bad_cmd;
		}
	}

	r = alloc_bitmaps(cmd);
	if (r) {
		*error = "Cannot allocate the in-core bitmaps";
		goto bad_bitmaps;
	}
	if (!bdev)
		return cmd;

	cmd->bufio = dm_bufio_client_create(bdev, DM_COR_BLOCK_SIZE, 1, 0, NULL, NULL, 0);
	if (IS_ERR(cmd->bufio)) {
		*error = "Cannot create the metadata dm-bufio client";
		r = PTR_ERR(cmd->bufio);
		goto bad_bitmaps;
	}

	r = read_superblocks(cmd, &format, error);
	if (r)
		goto bad_bufio;

	if (format) {
		r = format_metadata(cmd, error);
	} else {
		r = load_bitmaps(cmd, error);
		/* The inactive area may hold anything: rewrite it whole next time */
		bitmap_fill(cmd->changed_before, DM_COR_NR_BITMAPS * cmd->bitmap_blocks);
	}
	if (r)
		goto bad_bufio;

	return cmd;

bad_bufio:
	dm_bufio_client_destroy(cmd->bufio);
bad_bitmaps:
	free_bitmaps(cmd);
bad_cmd:
	kfree(cmd);
	return ERR_PTR(r);
}

void dm_cor_metadata_close(struct dm_cor_metadata *cmd)
{
	if (cmd->bufio)
		dm_bufio_client_destroy(cmd->bufio);
	free_bitmaps(cmd);
	kfree(cmd);
}
