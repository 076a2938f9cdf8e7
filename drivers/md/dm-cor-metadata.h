/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-cor metadata: the per-region state of a copy-on-read device behind
 * an opaque handle.
 *
 * Two bitmaps describe every region: "hydrated" (CLEAN or DIRTY: the
 * destination holds the region's data) and "dirty" (a user write, discard
 * or write-zeroes changed it).  Bits are only ever set, and the target sets
 * a region's bits only after the destination write they describe has
 * completed; the commit protocol relies on both facts.
 */
#ifndef DM_COR_METADATA_H
#define DM_COR_METADATA_H

#include <linux/types.h>

struct block_device;
struct dm_cor_metadata;

/* Metadata block size in sectors, as status reports it */
#define DM_COR_METADATA_BLOCK_SECTORS	8

/**
 * dm_cor_metadata_open() - Load or format persistent metadata, or create
 * volatile metadata.
 * @bdev: metadata device, or NULL for volatile (in-core only) metadata
 * @target_sectors: length of the cor device
 * @region_sectors: region size, a power of two
 * @error: set to a constant, human-readable reason on failure
 *
 * A device whose two superblock slots are all zeroes is formatted and the
 * empty state committed before this returns.  Otherwise the newest valid
 * superblock must match @target_sectors and @region_sectors and carry no
 * needs-check flag, and the bitmaps must pass their checksums.  May block.
 *
 * Return: the handle, or an ERR_PTR().
 */
struct dm_cor_metadata *dm_cor_metadata_open(struct block_device *bdev,
					     sector_t target_sectors,
					     sector_t region_sectors,
					     char **error);

/**
 * dm_cor_metadata_close() - Free the handle.  Nothing is committed: the
 * caller commits first if it wants the in-core state on disk.  May block.
 * @cmd: the metadata handle
 */
void dm_cor_metadata_close(struct dm_cor_metadata *cmd);

/**
 * dm_cor_metadata_is_volatile() - Whether @cmd lives in memory only.
 * @cmd: the metadata handle
 */
bool dm_cor_metadata_is_volatile(struct dm_cor_metadata *cmd);

/**
 * dm_cor_metadata_failed() - Whether a metadata I/O error has happened on
 * @cmd (it refuses commits from then on).  A table that takes over the
 * handle in a reload starts in read-only mode in that case.
 * @cmd: the metadata handle
 */
bool dm_cor_metadata_failed(struct dm_cor_metadata *cmd);

/**
 * dm_cor_region_hydrated() - Whether @region is CLEAN or DIRTY.
 * @cmd: the metadata handle
 * @region: region number
 *
 * Lockless; safe from any context.  A stale "false" is possible while a
 * mark is in progress on another CPU, so callers that act on "false"
 * re-check under their own lock, which they also hold when marking.
 */
bool dm_cor_region_hydrated(struct dm_cor_metadata *cmd, unsigned long region);

/**
 * dm_cor_region_dirty() - Whether @region is DIRTY.  Lockless, like
 * dm_cor_region_hydrated().
 * @cmd: the metadata handle
 * @region: region number
 */
bool dm_cor_region_dirty(struct dm_cor_metadata *cmd, unsigned long region);

/**
 * dm_cor_mark_regions() - Mark regions hydrated, and optionally dirty.
 * @cmd: the metadata handle
 * @start: first region
 * @nr: number of regions
 * @dirty: also set the dirty bits
 *
 * Call only once the destination writes for these regions have completed.
 * Doesn't block; safe from interrupt context.  Large ranges are marked in
 * chunks so interrupts are not held off for long.
 */
void dm_cor_mark_regions(struct dm_cor_metadata *cmd, unsigned long start,
			 unsigned long nr, bool dirty);

/**
 * dm_cor_nr_regions() - Number of regions.
 * @cmd: the metadata handle
 */
unsigned long dm_cor_nr_regions(struct dm_cor_metadata *cmd);

/**
 * dm_cor_nr_hydrated() - Number of hydrated (CLEAN or DIRTY) regions.
 * @cmd: the metadata handle
 */
unsigned long dm_cor_nr_hydrated(struct dm_cor_metadata *cmd);

/**
 * dm_cor_nr_dirty() - Number of DIRTY regions.
 * @cmd: the metadata handle
 */
unsigned long dm_cor_nr_dirty(struct dm_cor_metadata *cmd);

/**
 * dm_cor_metadata_release_hydrated() - Free the in-core hydrated bitmap once
 * every region is hydrated.
 * @cmd: metadata handle
 *
 * Does nothing unless every region is hydrated.  Afterwards every region
 * reads as hydrated, commits write all-set hydrated blocks, and the dirty
 * bitmap is kept.  Waits for an RCU grace period (lockless readers), so it
 * may block; call it from process context.
 */
void dm_cor_metadata_release_hydrated(struct dm_cor_metadata *cmd);

/**
 * dm_cor_find_next_region() - Find the next region at or after @start whose
 * bit in one bitmap has the value @set.
 * @cmd: the metadata handle
 * @dirty: search the dirty bitmap instead of the hydrated one
 * @set: look for set bits (true) or clear bits (false)
 * @start: first region to look at
 * @end: one past the last region to look at
 *
 * Lockless snapshot.  Return: the region, or @end if there is none.
 */
unsigned long dm_cor_find_next_region(struct dm_cor_metadata *cmd, bool dirty,
				      bool set, unsigned long start,
				      unsigned long end);

/**
 * dm_cor_metadata_changed() - Whether anything was marked since the last
 * commit (always false for volatile metadata).
 * @cmd: the metadata handle
 */
bool dm_cor_metadata_changed(struct dm_cor_metadata *cmd);

/**
 * dm_cor_metadata_pre_commit() - First half of a commit: copy the bitmap
 * blocks that changed into the inactive area (in dm-bufio, not yet
 * written).  The caller must flush the destination after this returns and
 * before calling dm_cor_metadata_commit(): every bit copied here describes
 * a destination write that completed before the copy.
 * @cmd: the metadata handle
 *
 * Callers serialise pre_commit/commit/set_needs_check.  May block.
 * Return: 0 or a negative errno.
 */
int dm_cor_metadata_pre_commit(struct dm_cor_metadata *cmd);

/**
 * dm_cor_metadata_commit() - Second half of a commit: write and flush the
 * bitmap blocks, then write and flush the new superblock.
 * @cmd: the metadata handle
 *
 * May block.  Return: 0 or a negative errno; after an error the handle
 * refuses further commits.
 */
int dm_cor_metadata_commit(struct dm_cor_metadata *cmd);

/**
 * dm_cor_metadata_set_needs_check() - Record on disk that the metadata
 * must be checked before its next use.  Best effort after an I/O error:
 * writes the spare superblock slot, keeping the last committed bitmaps.
 * @cmd: the metadata handle
 *
 * May block.  Return: 0 or a negative errno.
 */
int dm_cor_metadata_set_needs_check(struct dm_cor_metadata *cmd);

/**
 * dm_cor_metadata_usage() - Metadata blocks used by the layout and blocks
 * on the device (both 0 for volatile metadata).
 * @cmd: the metadata handle
 * @used: set to the number of blocks the layout uses
 * @total: set to the number of blocks on the device
 */
void dm_cor_metadata_usage(struct dm_cor_metadata *cmd, u64 *used, u64 *total);

#endif /* DM_COR_METADATA_H */
