// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-cor: a copy-on-read device-mapper target.
 *
 * It presents an ORIGIN device through a DESTINATION device.  The first
 * read of a region is served from the origin and the region is then copied
 * to the destination in the background; later reads of it hit the
 * destination.  Writes go to the destination; the origin is never written.
 * See Documentation/admin-guide/device-mapper/dm-cor.rst.
 */

#include <linux/atomic.h>
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/dm-io.h>
#include <linux/dm-kcopyd.h>
#include <linux/hash.h>
#include <linux/highmem.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/log2.h>
#include <linux/mempool.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "dm-cor-compat.h"
#include "dm-cor-metadata.h"

#define DM_MSG_PREFIX "cor"

#define MIN_REGION_SECTORS		BIT(3)	/* 4 KiB */
#define MAX_REGION_SECTORS		BIT(21)	/* 1 GiB */

#define MIN_REGION_OPS			256	/* size of the region op mempool */
#define MAX_HYDRATION_THRESHOLD		4096
#define MAX_HYDRATION_BATCH_SIZE	4096

/*
 * Default tunables: batches of 2 MiB (one region if regions are larger),
 * four batches in flight.  A raw copy with large direct I/O runs at full
 * speed at that size; smaller batches pay a round trip per region.
 */
#define DEFAULT_HYDRATION_BATCH_SECTORS	BIT(12)	/* 2 MiB */
#define DEFAULT_HYDRATION_BATCHES	4

/*
 * Hydration batches of up to HYDRATION_MAX_BATCH_PAGES are copied through
 * the target's own pages, one origin read and one destination write, as a
 * raw copy does; at most HYDRATION_MAX_PAGES per device.  Larger batches,
 * or a batch finding no memory, go through dm-kcopyd, which splits every
 * job into 64 KiB sub-jobs and so reaches less of a raw copy's throughput.
 */
#define HYDRATION_MAX_BATCH_PAGES	(4 * BIO_MAX_VECS)	/* 4 MiB */
#define HYDRATION_MAX_PAGES		8192			/* 32 MiB */
#define HYDRATION_CHUNK_ORDER		4	/* 64 KiB: fewer allocations, segments */

/*
 * The yield rule.  The device is busy while a user read or write is in
 * flight or completed less than HYDRATION_IDLE_WINDOW ago.  While it is
 * busy, hydration keeps one batch in flight and, after each batch, waits
 * HYDRATION_BUSY_GAP times as long as that batch took (at most
 * HYDRATION_MAX_BUSY_WAIT): it takes about 1/(HYDRATION_BUSY_GAP + 1) of
 * the devices' time, so it keeps moving under any load without slowing
 * the load down.  When the device is idle it keeps hydration_threshold
 * regions in flight.
 */
#define HYDRATION_IDLE_WINDOW		max(HZ / 100, 1)
#define HYDRATION_BUSY_GAP		64
#define HYDRATION_MAX_BUSY_WAIT		(5 * HZ)

/*
 * Cold reads of regions up to this size go through the target's own pages
 * (struct cold_read), holding at most COLD_READ_MAX_PAGES per device; larger
 * regions, or a cold read finding no memory, read the origin twice.
 */
#define COLD_READ_MAX_REGION_SECTORS	BIT(11)	/* 1 MiB */
#define COLD_READ_MAX_PAGES		8192	/* 32 MiB */

/*
 * A failed hydration copy is retried after HYDRATION_BACKOFF, doubling with
 * every consecutive failure; after HYDRATION_MAX_ATTEMPTS failed attempts
 * hydration stops with an error (counter and dm event), never looping.
 */
#define HYDRATION_MAX_ATTEMPTS		5
#define HYDRATION_BACKOFF		(HZ / 4)

/* Prefetch ranges queued at once; more are refused with -EBUSY */
#define MAX_PREFETCH_RANGES		1024

#define COMMIT_PERIOD			HZ
#define OP_HASH_BITS			10

/* Metadata modes, see the rst */
enum cor_mode {
	COR_MODE_RW,		/* metadata may change */
	COR_MODE_RO,		/* a metadata write failed: no more changes */
	COR_MODE_FAIL,		/* metadata is unusable: all I/O fails */
};

/* Bits of cor->flags */
enum cor_flag {
	COR_DISCARD_PASSDOWN,		/* discards are passed to the destination */
	COR_BACKGROUND_HYDRATION,	/* table asked for background hydration */
	COR_HYDRATION_ACTIVE,		/* background hydration is running */
	COR_BACKGROUND_HYDRATION_PENDING, /* start hydrating at the first resume */
	COR_SUSPENDED,			/* between presuspend and resume */
	COR_EVENT_PENDING,		/* the worker raises a dm event */
	COR_HYDRATED_ANNOUNCED,		/* the all-hydrated event was raised */
	COR_COMMIT_DUE,			/* the periodic commit timer fired */
	COR_HYDRATION_FAILED,		/* hydration stopped on a failing region */
};

/*
 * Serialises everything that changes one unhydrated region: a copy (for a
 * read or for a partial write) or a whole-region write.  While an op exists
 * for a region no other op can start on it; writes that arrive meanwhile
 * wait on @waiting.  Hydrated regions never have ops.
 */
struct cold_read;

struct region_op {
	struct hlist_node hash;
	struct list_head copy_entry;	/* on cor->copy_queue */
	struct cor *cor;
	unsigned long region;
	bool for_write;			/* copy done to complete a partial write */
	struct cold_read *cold;		/* its copy writes these pages */
	struct bio_list waiting;
};

/*
 * A cold read served through the target's own pages: the whole region is
 * read from the origin once, the reader is completed from those pages, and
 * the same pages are then written to the destination.  So the origin is
 * read once per copy, and no user page (which an O_DIRECT reader may change
 * while its read is in flight) is ever written to the destination.
 */
struct cold_read {
	struct region_op *op;
	struct bio *user_bio;
	struct bio *bio;		/* origin read, then destination write */
	unsigned int offset;		/* of the user's data in the region, bytes */
	unsigned int nr_pages;
	struct page *pages[];
};

/*
 * One background hydration copy: contiguous regions, each held by an op.
 * With @nr_chunks, the target's own bios read the batch into @chunks
 * (blocks of 2^@chunk_order pages), then write them to the destination;
 * without, dm-kcopyd copies it.
 */
struct hydration_batch {
	struct cor *cor;
	struct list_head ops;		/* linked by op->copy_entry */
	unsigned long first;
	unsigned long nr;
	bool prefetch;			/* taken from the prefetch queue */
	bool writing;			/* the reads are done, the writes issued */
	u64 start_ns;			/* when the copy was issued */
	struct list_head done_entry;	/* on cor->hydration_done */
	/*
	 * Bios of the current phase in flight: the end_io that drops it to
	 * zero hands the batch to the worker (under cor->lock), which then
	 * sees every bio's @status (WRITE_ONCE in end_io).
	 */
	atomic_t pending;
	blk_status_t status;		/* of the current phase */
	unsigned int chunk_order;
	unsigned int nr_chunks;
	struct page *chunks[];
};

/* Regions [next, end) that a prefetch message asked to copy first */
struct prefetch_range {
	struct list_head list;
	unsigned long next;
	unsigned long end;
};

struct cor_shared_metadata;

struct cor {
	struct dm_target *ti;

	struct dm_dev *origin_dev;
	struct dm_dev *dest_dev;
	struct dm_dev *metadata_dev;	/* NULL for volatile metadata */

	sector_t region_size;
	unsigned int region_shift;
	unsigned long nr_regions;

	struct cor_shared_metadata *shared;
	struct dm_cor_metadata *cmd;

	enum cor_mode mode;		/* READ_ONCE/WRITE_ONCE; set under shared commit_lock */
	unsigned long flags;		/* enum cor_flag bits */

	/*
	 * Protects the op hash table, the deferred bio lists, the copy queue,
	 * the hydration_done list and the prefetch queue, and orders op
	 * creation against marking regions hydrated (a region is marked and
	 * its op removed in one critical section).
	 */
	spinlock_t lock;
	struct hlist_head op_table[1 << OP_HASH_BITS];
	struct bio_list deferred_bios;		/* to (re)map in the worker */
	struct bio_list deferred_discards;
	struct bio_list deferred_flushes;	/* empty REQ_PREFLUSH bios */
	struct bio_list deferred_completions;	/* FUA writes awaiting a commit */
	struct list_head copy_queue;		/* ops whose copy is to be issued */
	struct list_head hydration_done;	/* batches whose bios all ended */
	struct list_head prefetch_queue;	/* struct prefetch_range, in order */
	unsigned int nr_prefetch_ranges;
	unsigned long prefetch_regions;		/* regions left in the queue */

	atomic_t nr_ops;			/* ops alive */
	atomic_t cold_read_pages;		/* pages held by cold reads */
	atomic_t hydration_pages;		/* pages held by hydration batches */
	atomic_t nr_copies;			/* copies in flight */
	wait_queue_head_t ops_drained;

	unsigned int hydration_threshold;
	unsigned int hydration_batch_size;

	/*
	 * Background hydration and prefetch state.  The worker reads and
	 * changes hydration_offset; a failed copy's completion sets the retry
	 * state (READ_ONCE/WRITE_ONCE), which the worker and messages reset.
	 */
	unsigned long hydration_offset;		/* next region to look at */
	unsigned int hydration_failures;	/* consecutive failed attempts */
	unsigned long hydration_failed_region;	/* first region of the last failure */
	unsigned long hydration_single_until;	/* copy one region at a time below */
	unsigned long hydration_retry_at;	/* jiffies: no copy before */
	atomic_t hydration_regions;		/* regions being hydrated */
	atomic_t user_ios;			/* user reads and writes in flight */
	/*
	 * The yield rule's clocks (READ_ONCE/WRITE_ONCE, no lock: a stale
	 * value only moves one decision by a tick).  end_io stamps
	 * last_user_io; a batch's completion sets hydration_busy_next; the
	 * worker reads both.
	 */
	unsigned long last_user_io;		/* jiffies: a user bio last ended */
	unsigned long hydration_busy_next;	/* jiffies: next batch while busy */

	mempool_t op_pool;
	struct bio_set discard_bs;
	struct bio_set cold_read_bs;
	struct bio_set hydration_bs;
	struct dm_kcopyd_client *kcopyd;
	struct workqueue_struct *wq;
	struct work_struct worker;
	struct delayed_work waker;
	struct delayed_work hydration_waker;	/* backoff and yield waits */

	/* Counters reported by status */
	atomic64_t origin_read_sectors;
	atomic64_t copies_done;
	atomic64_t copies_failed;
	atomic64_t origin_read_errors;
	atomic64_t hydration_errors;		/* times hydration gave up */
	atomic64_t unchanged_writes;		/* writes received with the flag */

	/* The table line as given, for STATUSTYPE_TABLE */
	unsigned int nr_ctr_args;
	const char **ctr_args;
};

/* Per-bio data */
#define COR_BIO_MARK_DIRTY	BIT(0)	/* mark the region dirty on success */
#define COR_BIO_COMMITTED	BIT(1)	/* FUA write whose commit is done */
#define COR_BIO_USER_IO		BIT(2)	/* counted in cor->user_ios */
#define COR_BIO_ORIGIN_READ	BIT(3)	/* a read remapped to the origin */
#define COR_BIO_NO_COLD_READ	BIT(4)	/* its cold read failed: origin only */
#define COR_BIO_FUA		BIT(5)	/* a FUA write, completed after a commit */

struct cor_bio_ctx {
	struct region_op *op;	/* op this bio holds, released at its end_io */
	unsigned long region;	/* for COR_BIO_MARK_DIRTY: the sector is gone by end_io */
	unsigned int flags;
};

/*
 * Metadata shared between the tables of one mapped device.
 *
 * A table reload constructs the new table while the old one is live, so the
 * new table must not read the on-disk state (it may lack uncommitted
 * changes); it takes a reference on the old table's in-core metadata
 * instead, found by dm device and target start.  The same registry refuses
 * a metadata device already in use by another dm device or target.
 */

struct cor_shared_metadata {
	struct list_head list;
	struct mapped_device *md;	/* with @begin, the target sharing it */
	sector_t begin;
	dev_t metadata_dev;		/* 0 for volatile metadata */
	sector_t target_sectors;
	sector_t region_sectors;
	struct dm_cor_metadata *cmd;
	unsigned int refs;

	/*
	 * Serialises commits (and the mode changes a failed commit causes)
	 * of every table using @cmd: the old table of a reload still commits
	 * at its suspend while the new one exists.
	 */
	struct mutex commit_lock;

	/*
	 * Background hydration was running when the last table using @cmd
	 * was suspended: the next table (a reload) carries on at resume.
	 * dm serialises the suspend and resume of one device.
	 */
	bool hydration_active;
};

/* Protects shared_metadata_list and the refs of its entries */
static DEFINE_MUTEX(shared_metadata_lock);
static LIST_HEAD(shared_metadata_list);

static struct cor_shared_metadata *get_shared_metadata(struct dm_target *ti,
						       struct block_device *bdev,
						       sector_t region_sectors)
{
	struct mapped_device *md = dm_table_get_md(ti->table);
	dev_t dev = bdev ? bdev->bd_dev : 0;
	struct cor_shared_metadata *sm;
	struct dm_cor_metadata *cmd;

	mutex_lock(&shared_metadata_lock);
	list_for_each_entry(sm, &shared_metadata_list, list) {
		if (dev ? sm->metadata_dev != dev :
			  sm->metadata_dev || sm->md != md || sm->begin != ti->begin)
			continue;
		if (sm->md != md || sm->begin != ti->begin) {
			ti->error = "Metadata device is in use by another dm-cor device";
			sm = ERR_PTR(-EBUSY);
		} else if (sm->region_sectors != region_sectors) {
			ti->error = "Region size differs from the metadata";
			sm = ERR_PTR(-EINVAL);
		} else if (sm->target_sectors != ti->len) {
			ti->error = "Device length differs from the metadata";
			sm = ERR_PTR(-EINVAL);
		} else {
			sm->refs++;
		}
		goto out;
	}

	sm = kzalloc(sizeof(*sm), GFP_KERNEL);
	if (!sm) {
		ti->error = "Cannot allocate shared metadata";
		sm = ERR_PTR(-ENOMEM);
		goto out;
	}
	cmd = dm_cor_metadata_open(bdev, ti->len, region_sectors, &ti->error);
	if (IS_ERR(cmd)) {
		kfree(sm);
		sm = ERR_CAST(cmd);
		goto out;
	}
	sm->md = md;
	sm->begin = ti->begin;
	sm->metadata_dev = dev;
	sm->target_sectors = ti->len;
	sm->region_sectors = region_sectors;
	sm->cmd = cmd;
	sm->refs = 1;
	mutex_init(&sm->commit_lock);
	list_add(&sm->list, &shared_metadata_list);
out:
	mutex_unlock(&shared_metadata_lock);
	return sm;
}

static void put_shared_metadata(struct cor_shared_metadata *sm)
{
	mutex_lock(&shared_metadata_lock);
	if (!--sm->refs) {
		list_del(&sm->list);
		dm_cor_metadata_close(sm->cmd);
		kfree(sm);
	}
	mutex_unlock(&shared_metadata_lock);
}

/* Helpers */

static void wake_worker(struct cor *cor)
{
	queue_work(cor->wq, &cor->worker);
}

static enum cor_mode get_mode(struct cor *cor)
{
	return READ_ONCE(cor->mode);
}

static const char *mode_name(enum cor_mode mode)
{
	switch (mode) {
	case COR_MODE_RW:
		return "rw";
	case COR_MODE_RO:
		return "ro";
	default:
		return "fail";
	}
}

static sector_t region_to_sector(struct cor *cor, unsigned long region)
{
	return (sector_t)region << cor->region_shift;
}

/* The last region may be shorter than the others */
static sector_t region_len(struct cor *cor, unsigned long region)
{
	return min(cor->region_size, cor->ti->len - region_to_sector(cor, region));
}

static sector_t bio_offset_sector(struct cor *cor, struct bio *bio)
{
	return dm_target_offset(cor->ti, bio->bi_iter.bi_sector);
}

static unsigned long bio_region(struct cor *cor, struct bio *bio)
{
	return bio_offset_sector(cor, bio) >> cor->region_shift;
}

static bool bio_covers_region(struct cor *cor, struct bio *bio, unsigned long region)
{
	return bio_offset_sector(cor, bio) == region_to_sector(cor, region) &&
	       bio_sectors(bio) == region_len(cor, region);
}

static struct cor_bio_ctx *bio_ctx(struct bio *bio)
{
	return dm_per_bio_data(bio, sizeof(struct cor_bio_ctx));
}

static void remap_to(struct cor *cor, struct bio *bio, struct dm_dev *dev)
{
	bio->bi_iter.bi_sector = bio_offset_sector(cor, bio);
	bio_set_dev(bio, dev->bdev);
}

static void defer_bio(struct cor *cor, struct bio_list *list, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&cor->lock, flags);
	bio_list_add(list, bio);
	spin_unlock_irqrestore(&cor->lock, flags);
	wake_worker(cor);
}

/* Metadata commit and failure handling */

/* Caller holds the shared commit_lock.  Never returns to rw. */
static void __set_mode(struct cor *cor, enum cor_mode mode)
{
	if (mode <= get_mode(cor))
		return;
	WRITE_ONCE(cor->mode, mode);
	DMERR("%s: switching to %s mode", dm_device_name(dm_table_get_md(cor->ti->table)),
	      mode_name(mode));
	dm_table_event(cor->ti->table);
}

/* Caller holds the shared commit_lock */
static void __metadata_failed(struct cor *cor, const char *op, int r)
{
	DMERR("%s: metadata %s failed: error = %d",
	      dm_device_name(dm_table_get_md(cor->ti->table)), op, r);

	if (dm_cor_metadata_set_needs_check(cor->cmd)) {
		DMERR("%s: cannot set the needs-check flag",
		      dm_device_name(dm_table_get_md(cor->ti->table)));
		__set_mode(cor, COR_MODE_FAIL);
		return;
	}
	__set_mode(cor, COR_MODE_RO);
}

/*
 * A table that took over the metadata in a reload was built before the
 * old table's last commit, which may have failed since: it must not stay
 * in rw mode.  Caller holds the shared commit_lock.
 */
static void __inherit_metadata_failure(struct cor *cor)
{
	if (get_mode(cor) == COR_MODE_RW && dm_cor_metadata_failed(cor->cmd))
		__set_mode(cor, COR_MODE_RO);
}

/*
 * The one commit path: snapshot the changed bitmap blocks, flush the
 * destination (so every region the snapshot marks has its data on stable
 * storage), then write the metadata.  Also called with nothing to commit,
 * to flush the destination for a REQ_PREFLUSH.
 *
 * Fails in ro mode too: the commit that failed held marks that are now in
 * core only, so no flush can make the writes behind them durable (dm-thin
 * fails flushes in its read-only mode for the same reason).
 */
static int commit_metadata(struct cor *cor)
{
	bool changed;
	int r;

	mutex_lock(&cor->shared->commit_lock);

	__inherit_metadata_failure(cor);
	if (get_mode(cor) != COR_MODE_RW) {
		r = -EIO;
		goto out;
	}

	changed = dm_cor_metadata_changed(cor->cmd);
	if (changed) {
		r = dm_cor_metadata_pre_commit(cor->cmd);
		if (r) {
			__metadata_failed(cor, "pre-commit", r);
			goto out;
		}
	}

	r = blkdev_issue_flush(cor->dest_dev->bdev);
	if (r) {
		DMERR_LIMIT("%s: destination flush failed: error = %d",
			    dm_device_name(dm_table_get_md(cor->ti->table)), r);
		if (changed)
			__metadata_failed(cor, "commit (destination flush)", r);
		goto out;
	}

	if (changed) {
		r = dm_cor_metadata_commit(cor->cmd);
		if (r)
			__metadata_failed(cor, "commit", r);
	}
out:
	mutex_unlock(&cor->shared->commit_lock);
	return r;
}

/* Region ops */

static struct hlist_head *op_bucket(struct cor *cor, unsigned long region)
{
	return &cor->op_table[hash_long(region, OP_HASH_BITS)];
}

/* Caller holds cor->lock */
static struct region_op *__find_op(struct cor *cor, unsigned long region)
{
	struct region_op *op;

	hlist_for_each_entry(op, op_bucket(cor, region), hash)
		if (op->region == region)
			return op;
	return NULL;
}

/* Caller holds cor->lock.  Doesn't block. */
static struct region_op *__new_op(struct cor *cor, unsigned long region)
{
	struct region_op *op = mempool_alloc(&cor->op_pool, GFP_NOWAIT);

	if (!op)
		return NULL;
	op->cor = cor;
	op->region = region;
	op->for_write = false;
	op->cold = NULL;
	INIT_LIST_HEAD(&op->copy_entry);
	bio_list_init(&op->waiting);
	hlist_add_head(&op->hash, op_bucket(cor, region));
	atomic_inc(&cor->nr_ops);
	return op;
}

/* Caller holds cor->lock */
static void __queue_copy(struct cor *cor, struct region_op *op)
{
	list_add_tail(&op->copy_entry, &cor->copy_queue);
	atomic_inc(&cor->nr_copies);
}

/*
 * End an op: optionally mark its region (in the same critical section that
 * removes the op, so map() never sees the region unhydrated and unlocked
 * after its data landed), then hand the waiting bios to the worker.
 * Doesn't block; safe from interrupt context.
 */
static void release_op(struct cor *cor, struct region_op *op, bool mark, bool dirty,
		       blk_status_t waiters_status)
{
	struct bio_list waiting = BIO_EMPTY_LIST;
	unsigned long flags;
	struct bio *bio;

	spin_lock_irqsave(&cor->lock, flags);
	if (mark)
		dm_cor_mark_regions(cor->cmd, op->region, 1, dirty);
	hlist_del(&op->hash);
	if (waiters_status == BLK_STS_OK)
		bio_list_merge(&cor->deferred_bios, &op->waiting);
	else
		bio_list_merge(&waiting, &op->waiting);
	spin_unlock_irqrestore(&cor->lock, flags);

	while ((bio = bio_list_pop(&waiting))) {
		bio->bi_status = waiters_status;
		bio_endio(bio);
	}

	mempool_free(op, &cor->op_pool);
	if (atomic_dec_and_test(&cor->nr_ops))
		wake_up(&cor->ops_drained);
	wake_worker(cor);
}

static void copy_complete(int read_err, unsigned long write_err, void *context)
{
	struct region_op *op = context;
	struct cor *cor = op->cor;
	bool ok = !read_err && !write_err;

	atomic_dec(&cor->nr_copies);
	if (ok) {
		atomic64_inc(&cor->copies_done);
	} else {
		atomic64_inc(&cor->copies_failed);
		if (read_err)
			atomic64_inc(&cor->origin_read_errors);
		DMERR_LIMIT("%s: copy of region %lu failed (%s error)",
			    dm_device_name(dm_table_get_md(cor->ti->table)), op->region,
			    read_err ? "origin read" : "destination write");
	}

	/*
	 * A failed copy made for a partial write fails that write: its data
	 * cannot be merged with the origin's.  Writes waiting on a failed
	 * copy-on-read are retried and start a copy of their own.
	 */
	release_op(cor, op, ok, false,
		   ok || !op->for_write ? BLK_STS_OK : BLK_STS_IOERR);
}

static void issue_copy(struct cor *cor, struct region_op *op)
{
	struct dm_io_region from, to;

	from.bdev = cor->origin_dev->bdev;
	from.sector = region_to_sector(cor, op->region);
	from.count = region_len(cor, op->region);

	to.bdev = cor->dest_dev->bdev;
	to.sector = from.sector;
	to.count = from.count;

	atomic64_add(from.count, &cor->origin_read_sectors);
	dm_kcopyd_copy(cor->kcopyd, &from, 1, &to, COR_KCOPYD_WRITE_UNCHANGED, copy_complete, op);
}

/* Cold reads through the target's own pages */

static void free_cold_read(struct cor *cor, struct cold_read *cr)
{
	unsigned int i;

	if (cr->bio)
		bio_put(cr->bio);
	for (i = 0; i < cr->nr_pages; i++)
		__free_page(cr->pages[i]);
	atomic_sub(cr->nr_pages, &cor->cold_read_pages);
	kfree(cr);
}

/* (Re)fill @cr->bio with the region's pages; the bio has room for them */
static void cold_read_add_pages(struct cor *cor, struct cold_read *cr)
{
	unsigned int left = region_len(cor, cr->op->region) << SECTOR_SHIFT;
	unsigned int i, len;

	for (i = 0; i < cr->nr_pages; i++, left -= len) {
		len = min_t(unsigned int, left, PAGE_SIZE);
		__bio_add_page(cr->bio, cr->pages[i], len, 0);
	}
}

/* Copy the user's part of the region from @cr's pages into its bio */
static void cold_read_fill_user_bio(struct cold_read *cr)
{
	unsigned int off = cr->offset, done, n;
	struct bvec_iter iter;
	struct bio_vec bv;

	bio_for_each_segment(bv, cr->user_bio, iter) {
		for (done = 0; done < bv.bv_len; done += n, off += n) {
			n = min_t(unsigned int, bv.bv_len - done,
				  PAGE_SIZE - offset_in_page(off));
			memcpy_to_page(bv.bv_page, bv.bv_offset + done,
				       page_address(cr->pages[off >> PAGE_SHIFT]) +
				       offset_in_page(off), n);
		}
	}
}

static void cold_write_endio(struct bio *bio)
{
	struct cold_read *cr = bio->bi_private;
	struct region_op *op = cr->op;
	struct cor *cor = op->cor;
	bool ok = !bio->bi_status;

	atomic_dec(&cor->nr_copies);
	if (ok) {
		atomic64_inc(&cor->copies_done);
	} else {
		atomic64_inc(&cor->copies_failed);
		DMERR_LIMIT("%s: copy of region %lu failed (destination write error)",
			    dm_device_name(dm_table_get_md(cor->ti->table)), op->region);
	}
	free_cold_read(cor, cr);
	release_op(cor, op, ok, false, BLK_STS_OK);
}

/* From the worker: write the pages a cold read filled to the destination */
static void issue_cold_write(struct cor *cor, struct region_op *op)
{
	struct cold_read *cr = op->cold;

	op->cold = NULL;
	bio_reset(cr->bio, cor->dest_dev->bdev, REQ_OP_WRITE | COR_REQ_WRITE_UNCHANGED);
	cr->bio->bi_iter.bi_sector = region_to_sector(cor, op->region);
	cr->bio->bi_end_io = cold_write_endio;
	cr->bio->bi_private = cr;
	cold_read_add_pages(cor, cr);
	submit_bio_noacct(cr->bio);
}

static void cold_read_endio(struct bio *bio)
{
	struct cold_read *cr = bio->bi_private;
	struct region_op *op = cr->op;
	struct cor *cor = op->cor;
	unsigned long flags;

	if (bio->bi_status) {
		atomic64_inc(&cor->origin_read_errors);
		if (bio_covers_region(cor, cr->user_bio, op->region)) {
			cr->user_bio->bi_status = bio->bi_status;
			bio_endio(cr->user_bio);
		} else {
			/*
			 * The reader's own sectors may be readable: the copy
			 * failed, the reader retries them from the origin.
			 */
			atomic64_inc(&cor->copies_failed);
			DMERR_LIMIT("%s: copy of region %lu failed (origin read error)",
				    dm_device_name(dm_table_get_md(cor->ti->table)),
				    op->region);
			bio_ctx(cr->user_bio)->flags |= COR_BIO_NO_COLD_READ;
			spin_lock_irqsave(&cor->lock, flags);
			bio_list_add(&cor->deferred_bios, cr->user_bio);
			spin_unlock_irqrestore(&cor->lock, flags);
		}
		free_cold_read(cor, cr);
		release_op(cor, op, false, false, BLK_STS_OK);
		return;
	}

	cold_read_fill_user_bio(cr);
	bio_endio(cr->user_bio);
	cr->user_bio = NULL;

	/* The copy is issued from the worker: not on this read's path */
	spin_lock_irqsave(&cor->lock, flags);
	op->cold = cr;
	__queue_copy(cor, op);
	spin_unlock_irqrestore(&cor->lock, flags);
	wake_worker(cor);
}

/*
 * Read the whole region of @op into new pages, completing @bio from them.
 * Returns false, having changed nothing, when the region is too large or
 * memory is short: the caller then reads the origin directly.  Doesn't block.
 */
static bool start_cold_read(struct cor *cor, struct region_op *op, struct bio *bio)
{
	sector_t len = region_len(cor, op->region);
	unsigned int nr_pages = DIV_ROUND_UP(len << SECTOR_SHIFT, PAGE_SIZE);
	const gfp_t gfp = GFP_NOWAIT | __GFP_NOWARN;
	struct cold_read *cr;

	if (cor->region_size > COLD_READ_MAX_REGION_SECTORS)
		return false;
	if (atomic_add_return(nr_pages, &cor->cold_read_pages) > COLD_READ_MAX_PAGES) {
		atomic_sub(nr_pages, &cor->cold_read_pages);
		return false;
	}
	cr = kzalloc(struct_size(cr, pages, nr_pages), gfp);
	if (!cr) {
		atomic_sub(nr_pages, &cor->cold_read_pages);
		return false;
	}
	cr->op = op;
	cr->user_bio = bio;
	cr->offset = (bio_offset_sector(cor, bio) - region_to_sector(cor, op->region)) <<
		     SECTOR_SHIFT;
	for (; cr->nr_pages < nr_pages; cr->nr_pages++) {
		cr->pages[cr->nr_pages] = alloc_page(gfp);
		if (!cr->pages[cr->nr_pages])
			goto fail;
	}
	cr->bio = bio_alloc_bioset(cor->origin_dev->bdev, nr_pages, REQ_OP_READ, gfp,
				   &cor->cold_read_bs);
	if (!cr->bio)
		goto fail;
	cr->bio->bi_iter.bi_sector = region_to_sector(cor, op->region);
	cr->bio->bi_ioprio = bio->bi_ioprio;
	cr->bio->bi_end_io = cold_read_endio;
	cr->bio->bi_private = cr;
	cold_read_add_pages(cor, cr);

	atomic64_add(len, &cor->origin_read_sectors);
	submit_bio_noacct(cr->bio);
	return true;

fail:
	/* free_cold_read() gives back the pages allocated, this the rest */
	atomic_sub(nr_pages - cr->nr_pages, &cor->cold_read_pages);
	free_cold_read(cor, cr);
	return false;
}

/* Mapping data bios (reads and writes, never crossing a region) */

/*
 * A write flagged REQ_WRITE_UNCHANGED does not change what the device
 * presents (a stacked cor device's copy, say): it never makes a region
 * DIRTY.  Always false on kernels without the flag.
 */
static bool bio_unchanged(struct bio *bio)
{
	return bio->bi_opf & COR_REQ_WRITE_UNCHANGED;
}

static int map_to_dest_write(struct cor *cor, struct bio *bio, unsigned long region)
{
	struct cor_bio_ctx *ctx = bio_ctx(bio);

	if (!bio_unchanged(bio) && !dm_cor_region_dirty(cor->cmd, region)) {
		/*
		 * Only a dirty bit could record this write, and outside rw
		 * mode none is committed: a CLEAN region written now would
		 * later be taken for a copy of the origin.
		 */
		if (get_mode(cor) != COR_MODE_RW)
			return DM_MAPIO_KILL;
		ctx->flags |= COR_BIO_MARK_DIRTY;
		ctx->region = region;
	}
	remap_to(cor, bio, cor->dest_dev);
	return DM_MAPIO_REMAPPED;
}

/*
 * Read of a region that looked unhydrated: serve it from the origin and, if
 * no op holds the region, take one so the region is copied once the read
 * completes: through a cold read of the whole region if possible, else by
 * reading the origin again.  Doesn't block.
 */
static int map_cold_read(struct cor *cor, struct bio *bio, unsigned long region)
{
	struct cor_bio_ctx *ctx = bio_ctx(bio);
	struct region_op *op = NULL;
	unsigned long flags;

	spin_lock_irqsave(&cor->lock, flags);
	if (dm_cor_region_hydrated(cor->cmd, region)) {
		spin_unlock_irqrestore(&cor->lock, flags);
		remap_to(cor, bio, cor->dest_dev);
		return DM_MAPIO_REMAPPED;
	}
	/* Without an op (pool empty, or another op holds it) there is no copy */
	if (get_mode(cor) == COR_MODE_RW && !__find_op(cor, region) &&
	    !(ctx->flags & COR_BIO_NO_COLD_READ))
		op = __new_op(cor, region);
	spin_unlock_irqrestore(&cor->lock, flags);

	if (op && start_cold_read(cor, op, bio))
		return DM_MAPIO_SUBMITTED;

	ctx->op = op;
	ctx->flags |= COR_BIO_ORIGIN_READ;
	atomic64_add(bio_sectors(bio), &cor->origin_read_sectors);
	remap_to(cor, bio, cor->origin_dev);
	return DM_MAPIO_REMAPPED;
}

/*
 * Write to a region that looked unhydrated.  A whole-region write takes the
 * region's op and goes straight to the destination; a partial write waits
 * for a copy of the region first.  Doesn't block.
 */
static int map_cold_write(struct cor *cor, struct bio *bio, unsigned long region)
{
	struct cor_bio_ctx *ctx = bio_ctx(bio);
	struct region_op *op;
	unsigned long flags;

	spin_lock_irqsave(&cor->lock, flags);
	if (dm_cor_region_hydrated(cor->cmd, region)) {
		spin_unlock_irqrestore(&cor->lock, flags);
		return map_to_dest_write(cor, bio, region);
	}

	op = __find_op(cor, region);
	if (op) {
		bio_list_add(&op->waiting, bio);
		spin_unlock_irqrestore(&cor->lock, flags);
		return DM_MAPIO_SUBMITTED;
	}

	if (get_mode(cor) != COR_MODE_RW) {
		spin_unlock_irqrestore(&cor->lock, flags);
		return DM_MAPIO_KILL;
	}

	op = __new_op(cor, region);
	if (!op) {
		/* Retried by the worker once an op is freed (or by the waker) */
		bio_list_add(&cor->deferred_bios, bio);
		spin_unlock_irqrestore(&cor->lock, flags);
		return DM_MAPIO_SUBMITTED;
	}

	if (bio_covers_region(cor, bio, region)) {
		ctx->op = op;
		spin_unlock_irqrestore(&cor->lock, flags);
		remap_to(cor, bio, cor->dest_dev);
		return DM_MAPIO_REMAPPED;
	}

	op->for_write = true;
	bio_list_add(&op->waiting, bio);
	__queue_copy(cor, op);
	spin_unlock_irqrestore(&cor->lock, flags);
	wake_worker(cor);
	return DM_MAPIO_SUBMITTED;
}

static int map_data_bio(struct cor *cor, struct bio *bio)
{
	unsigned long region = bio_region(cor, bio);

	if (bio_data_dir(bio) == READ) {
		if (dm_cor_region_hydrated(cor->cmd, region)) {
			remap_to(cor, bio, cor->dest_dev);
			return DM_MAPIO_REMAPPED;
		}
		return map_cold_read(cor, bio, region);
	}

	if (dm_cor_region_hydrated(cor->cmd, region))
		return map_to_dest_write(cor, bio, region);
	return map_cold_write(cor, bio, region);
}

/* Discards */

/*
 * Whole regions covered by the discard are marked DIRTY (their data is now
 * undefined, so the origin need never be read) unless an op holds them; the
 * discard then passes down for every hydrated region it touches.
 */
static void process_discard(struct cor *cor, struct bio *bio)
{
	sector_t start = bio_offset_sector(cor, bio), end = start + bio_sectors(bio);
	unsigned long first = start >> cor->region_shift;
	unsigned long last = (end - 1) >> cor->region_shift;
	unsigned long whole_first = DIV_ROUND_UP_SECTOR_T(start, cor->region_size);
	unsigned long whole_end = end >> cor->region_shift;
	unsigned long region, run_end;
	struct bio *child;

	if (end == cor->ti->len)
		whole_end = cor->nr_regions;	/* a short last region counts as whole */

	if (get_mode(cor) != COR_MODE_RW) {
		bio_io_error(bio);
		return;
	}

	for (region = whole_first; region < whole_end; region++) {
		unsigned long flags;

		spin_lock_irqsave(&cor->lock, flags);
		if (!__find_op(cor, region)) {
			/* No op anywhere: mark the rest of the range at once */
			if (!atomic_read(&cor->nr_ops)) {
				dm_cor_mark_regions(cor->cmd, region, whole_end - region, true);
				region = whole_end;
			} else {
				dm_cor_mark_regions(cor->cmd, region, 1, true);
			}
		}
		spin_unlock_irqrestore(&cor->lock, flags);
	}

	if (!test_bit(COR_DISCARD_PASSDOWN, &cor->flags)) {
		bio_endio(bio);
		return;
	}

	/* One child discard per run of hydrated regions, chained to @bio */
	region = first;
	while (region <= last) {
		region = dm_cor_find_next_region(cor->cmd, false, true, region, last + 1);
		if (region > last)
			break;
		run_end = dm_cor_find_next_region(cor->cmd, false, false, region, last + 1);

		/*
		 * The discard changes every region it reaches, partial ones
		 * and any whose copy completed since the marking above.
		 */
		dm_cor_mark_regions(cor->cmd, region, run_end - region, true);

		child = bio_alloc_bioset(cor->dest_dev->bdev, 0, REQ_OP_DISCARD, GFP_NOIO,
					 &cor->discard_bs);
		child->bi_iter.bi_sector = max(start, region_to_sector(cor, region));
		child->bi_iter.bi_size = (min(end, region_to_sector(cor, run_end)) -
					  child->bi_iter.bi_sector) << SECTOR_SHIFT;
		bio_chain(child, bio);
		submit_bio_noacct(child);
		region = run_end;
	}
	bio_endio(bio);
}

/* Background hydration */

/* Run the worker again in @delay jiffies (unless suspended) */
static void wake_hydration_later(struct cor *cor, unsigned long delay)
{
	if (!test_bit(COR_SUSPENDED, &cor->flags))
		mod_delayed_work(cor->wq, &cor->hydration_waker, delay);
}

static void do_hydration_waker(struct work_struct *work)
{
	wake_worker(container_of(to_delayed_work(work), struct cor, hydration_waker));
}

/* See HYDRATION_IDLE_WINDOW */
static bool device_busy(struct cor *cor)
{
	return atomic_read(&cor->user_ios) ||
	       time_before(jiffies, READ_ONCE(cor->last_user_io) + HYDRATION_IDLE_WINDOW);
}

static void stop_hydration(struct cor *cor, const char *why)
{
	if (!test_and_clear_bit(COR_HYDRATION_ACTIVE, &cor->flags))
		return;
	DMINFO("%s: background hydration stopped: %s",
	       dm_device_name(dm_table_get_md(cor->ti->table)), why);
	set_bit(COR_EVENT_PENDING, &cor->flags);
}

/* Caller holds cor->lock */
static void __queue_prefetch(struct cor *cor, struct prefetch_range *pr, bool head)
{
	if (head)
		list_add(&pr->list, &cor->prefetch_queue);
	else
		list_add_tail(&pr->list, &cor->prefetch_queue);
	cor->nr_prefetch_ranges++;
	cor->prefetch_regions += pr->end - pr->next;
}

static void clear_prefetch_queue(struct cor *cor)
{
	struct prefetch_range *pr, *tmp;
	LIST_HEAD(ranges);

	spin_lock_irq(&cor->lock);
	list_splice_init(&cor->prefetch_queue, &ranges);
	cor->nr_prefetch_ranges = 0;
	cor->prefetch_regions = 0;
	spin_unlock_irq(&cor->lock);

	list_for_each_entry_safe(pr, tmp, &ranges, list)
		kfree(pr);
}

/*
 * A failed batch is retried, after a backoff, from its first region: the
 * scan goes back there, a prefetched range goes back to the queue's head.
 * Its regions are then copied one at a time, so that a bad region stops
 * hydration only once the good regions around it are copied.
 */
static void hydration_batch_failed(struct cor *cor, struct hydration_batch *batch)
{
	unsigned int failures = READ_ONCE(cor->hydration_failures) + 1;
	unsigned long delay = HYDRATION_BACKOFF << min(failures - 1, 8U);
	struct prefetch_range *pr;
	unsigned long flags;

	WRITE_ONCE(cor->hydration_failures, failures);
	WRITE_ONCE(cor->hydration_failed_region, batch->first);
	/* Retried region by region, so that only a failing region is left */
	WRITE_ONCE(cor->hydration_single_until, batch->first + batch->nr);
	WRITE_ONCE(cor->hydration_retry_at, jiffies + delay);
	if (batch->prefetch) {
		pr = kmalloc(sizeof(*pr), GFP_NOIO);
		if (pr) {
			pr->next = batch->first;
			pr->end = batch->first + batch->nr;
			spin_lock_irqsave(&cor->lock, flags);
			__queue_prefetch(cor, pr, true);
			spin_unlock_irqrestore(&cor->lock, flags);
		}
	} else {
		WRITE_ONCE(cor->hydration_offset, batch->first);
	}
	wake_hydration_later(cor, delay);
}

static void free_hydration_batch(struct cor *cor, struct hydration_batch *batch)
{
	unsigned int i;

	for (i = 0; i < batch->nr_chunks; i++)
		__free_pages(batch->chunks[i], batch->chunk_order);
	atomic_sub(batch->nr_chunks << batch->chunk_order, &cor->hydration_pages);
	kfree(batch);
}

/* Also the dm-kcopyd callback; runs in process context */
static void hydration_batch_complete(int read_err, unsigned long write_err, void *context)
{
	struct hydration_batch *batch = context;
	struct cor *cor = batch->cor;
	bool ok = !read_err && !write_err;
	struct region_op *op, *tmp;
	unsigned long wait, r, flags;

	/* The yield rule's wait while the device is busy */
	wait = nsecs_to_jiffies((ktime_get_ns() - batch->start_ns) * HYDRATION_BUSY_GAP);
	WRITE_ONCE(cor->hydration_busy_next,
		   jiffies + clamp(wait, 1UL, (unsigned long)HYDRATION_MAX_BUSY_WAIT));

	if (ok) {
		atomic64_add(batch->nr, &cor->copies_done);
		/* Failures count per region: only its copy resets them */
		r = READ_ONCE(cor->hydration_failed_region);
		if (r >= batch->first && r < batch->first + batch->nr)
			WRITE_ONCE(cor->hydration_failures, 0);
	} else {
		atomic64_add(batch->nr, &cor->copies_failed);
		if (read_err)
			atomic64_inc(&cor->origin_read_errors);
		DMERR_LIMIT("%s: hydration of regions %lu-%lu failed (%s error)",
			    dm_device_name(dm_table_get_md(cor->ti->table)),
			    batch->first, batch->first + batch->nr - 1,
			    read_err ? "origin read" : "destination write");
		hydration_batch_failed(cor, batch);
	}

	atomic_sub(batch->nr, &cor->nr_copies);
	atomic_sub(batch->nr, &cor->hydration_regions);

	/* release_op() for each op, in one critical section */
	spin_lock_irqsave(&cor->lock, flags);
	if (ok)
		dm_cor_mark_regions(cor->cmd, batch->first, batch->nr, false);
	list_for_each_entry(op, &batch->ops, copy_entry) {
		hlist_del(&op->hash);
		bio_list_merge(&cor->deferred_bios, &op->waiting);
	}
	spin_unlock_irqrestore(&cor->lock, flags);
	list_for_each_entry_safe(op, tmp, &batch->ops, copy_entry)
		mempool_free(op, &cor->op_pool);
	if (atomic_sub_and_test(batch->nr, &cor->nr_ops))
		wake_up(&cor->ops_drained);
	wake_worker(cor);
	free_hydration_batch(cor, batch);
}

static void hydration_bio_endio(struct bio *bio)
{
	struct hydration_batch *batch = bio->bi_private;
	struct cor *cor = batch->cor;
	unsigned long flags;

	if (bio->bi_status)
		WRITE_ONCE(batch->status, bio->bi_status);
	bio_put(bio);
	if (!atomic_dec_and_test(&batch->pending))
		return;

	/* The next phase, or the completion, runs in the worker */
	spin_lock_irqsave(&cor->lock, flags);
	list_add_tail(&batch->done_entry, &cor->hydration_done);
	spin_unlock_irqrestore(&cor->lock, flags);
	wake_worker(cor);
}

/* Read the batch from the origin into its pages, or write them to the destination */
static void submit_hydration_bios(struct cor *cor, struct hydration_batch *batch,
				  struct block_device *bdev, blk_opf_t opf)
{
	sector_t sector = region_to_sector(cor, batch->first);
	unsigned int left = (min(region_to_sector(cor, batch->first + batch->nr), cor->ti->len) -
			     sector) << SECTOR_SHIFT;
	unsigned int i = 0, n, len;
	struct bio *bio;

	batch->status = BLK_STS_OK;
	atomic_set(&batch->pending, DIV_ROUND_UP(batch->nr_chunks, BIO_MAX_VECS));
	while (i < batch->nr_chunks) {
		n = min_t(unsigned int, batch->nr_chunks - i, BIO_MAX_VECS);
		/* From the worker, which may wait for the bioset's reserve */
		bio = bio_alloc_bioset(bdev, n, opf, GFP_NOIO, &cor->hydration_bs);
		bio->bi_iter.bi_sector = sector;
		bio->bi_end_io = hydration_bio_endio;
		bio->bi_private = batch;
		for (; n; n--, i++, left -= len) {
			len = min_t(unsigned int, left, PAGE_SIZE << batch->chunk_order);
			__bio_add_page(bio, batch->chunks[i], len, 0);
		}
		sector += bio_sectors(bio);
		submit_bio_noacct(bio);
	}
}

/* Batches whose reads or writes all ended: write them, or complete them */
static void process_hydration_batches(struct cor *cor)
{
	struct hydration_batch *batch, *tmp;
	LIST_HEAD(batches);

	spin_lock_irq(&cor->lock);
	list_splice_init(&cor->hydration_done, &batches);
	spin_unlock_irq(&cor->lock);

	list_for_each_entry_safe(batch, tmp, &batches, done_entry) {
		list_del(&batch->done_entry);
		if (!batch->writing && !batch->status) {
			batch->writing = true;
			submit_hydration_bios(cor, batch, cor->dest_dev->bdev,
					      REQ_OP_WRITE | COR_REQ_WRITE_UNCHANGED);
			continue;
		}
		hydration_batch_complete(!batch->writing, batch->writing && batch->status,
					 batch);
	}
}

/*
 * Pages for a batch of @nr_sectors; false (nothing held) when the batch is
 * too large or memory is short: dm-kcopyd copies it then.
 */
static bool alloc_hydration_pages(struct cor *cor, struct hydration_batch *batch,
				  sector_t nr_sectors)
{
	unsigned int bytes, order, nr_pages, nr;
	struct page *page;

	if (nr_sectors > (HYDRATION_MAX_BATCH_PAGES << (PAGE_SHIFT - SECTOR_SHIFT)))
		return false;
	bytes = nr_sectors << SECTOR_SHIFT;
	order = min_t(unsigned int, get_order(bytes), HYDRATION_CHUNK_ORDER);
	nr_pages = round_up(DIV_ROUND_UP(bytes, PAGE_SIZE), 1U << order);
	if (atomic_add_return(nr_pages, &cor->hydration_pages) > HYDRATION_MAX_PAGES) {
		atomic_sub(nr_pages, &cor->hydration_pages);
		return false;
	}
	for (;;) {
		nr = nr_pages >> order;
		for (batch->nr_chunks = 0; batch->nr_chunks < nr; batch->nr_chunks++) {
			page = alloc_pages(GFP_NOWAIT | __GFP_NOWARN, order);
			if (!page)
				break;
			batch->chunks[batch->nr_chunks] = page;
		}
		if (batch->nr_chunks == nr) {
			batch->chunk_order = order;
			return true;
		}
		while (batch->nr_chunks)
			__free_pages(batch->chunks[--batch->nr_chunks], order);
		if (!order)
			break;
		/* Fragmented memory: single pages */
		order = 0;
		nr = DIV_ROUND_UP(bytes, PAGE_SIZE);
		atomic_sub(nr_pages - nr, &cor->hydration_pages);
		nr_pages = nr;
	}
	atomic_sub(nr_pages, &cor->hydration_pages);
	return false;
}

/*
 * The next region to hydrate and the end of the run it may extend to:
 * prefetched ranges first, in the order they were queued, then (if
 * background hydration runs) the scan from hydration_offset, wrapping once.
 * Returns false when there is nothing to copy.
 */
static bool next_hydration_region(struct cor *cor, unsigned long *region,
				  unsigned long *end, bool *prefetch)
{
	struct prefetch_range *pr;
	unsigned long r;

	spin_lock_irq(&cor->lock);
	while ((pr = list_first_entry_or_null(&cor->prefetch_queue,
					      struct prefetch_range, list))) {
		r = dm_cor_find_next_region(cor->cmd, false, false, pr->next, pr->end);
		cor->prefetch_regions -= r - pr->next;
		pr->next = r;
		if (r < pr->end) {
			spin_unlock_irq(&cor->lock);
			*region = r;
			*end = pr->end;
			*prefetch = true;
			return true;
		}
		list_del(&pr->list);
		cor->nr_prefetch_ranges--;
		kfree(pr);
	}
	spin_unlock_irq(&cor->lock);

	*prefetch = false;
	if (!test_bit(COR_HYDRATION_ACTIVE, &cor->flags))
		return false;
	*end = cor->nr_regions;
	r = dm_cor_find_next_region(cor->cmd, false, false, cor->hydration_offset,
				    cor->nr_regions);
	if (r >= cor->nr_regions)
		r = dm_cor_find_next_region(cor->cmd, false, false, 0, cor->nr_regions);
	if (r >= cor->nr_regions) {
		if (!atomic_read(&cor->hydration_regions))
			stop_hydration(cor, "every region is hydrated");
		return false;
	}
	*region = r;
	return true;
}

/* The prefetch range a batch came from has been started up to @next */
static void prefetch_advance(struct cor *cor, unsigned long first, unsigned long next)
{
	struct prefetch_range *pr;

	spin_lock_irq(&cor->lock);
	pr = list_first_entry_or_null(&cor->prefetch_queue, struct prefetch_range, list);
	if (pr && pr->next == first) {
		cor->prefetch_regions -= min(next, pr->end) - pr->next;
		pr->next = min(next, pr->end);
	}
	spin_unlock_irq(&cor->lock);
}

/*
 * Start one copy of up to @max contiguous unhydrated regions that no op
 * holds.  Returns false when nothing could be started now.
 */
static bool start_hydration_batch(struct cor *cor, unsigned long max)
{
	struct hydration_batch *batch;
	struct dm_io_region from, to;
	unsigned long region, end, r;
	struct region_op *op;
	unsigned int max_pages;
	bool prefetch;

	if (!next_hydration_region(cor, &region, &end, &prefetch))
		return false;
	if (region < READ_ONCE(cor->hydration_single_until))
		max = 1;
	else if (!prefetch)
		WRITE_ONCE(cor->hydration_single_until, 0);

	/* Room for the pages of the largest batch that uses them */
	max_pages = min_t(sector_t, (sector_t)max << cor->region_shift,
			  HYDRATION_MAX_BATCH_PAGES << (PAGE_SHIFT - SECTOR_SHIFT)) >>
		    (PAGE_SHIFT - SECTOR_SHIFT);
	batch = kzalloc(struct_size(batch, chunks, max_pages), GFP_NOIO);
	if (!batch)
		return false;
	batch->cor = cor;
	batch->first = region;
	batch->prefetch = prefetch;
	INIT_LIST_HEAD(&batch->ops);

	spin_lock_irq(&cor->lock);
	for (r = region; r < end && batch->nr < max; r++) {
		if (dm_cor_region_hydrated(cor->cmd, r) || __find_op(cor, r))
			break;
		op = __new_op(cor, r);
		if (!op)
			break;
		list_add_tail(&op->copy_entry, &batch->ops);
		batch->nr++;
	}
	spin_unlock_irq(&cor->lock);

	/*
	 * A region held by another op is skipped: that op copies or writes
	 * it, and if it fails the next pass over the bitmap comes back.
	 */
	if (prefetch)
		prefetch_advance(cor, region, region + max(batch->nr, 1UL));
	else
		cor->hydration_offset = region + max(batch->nr, 1UL);
	if (!batch->nr) {
		/* Retried when an op ends: release_op() wakes the worker */
		kfree(batch);
		return false;
	}

	atomic_add(batch->nr, &cor->nr_copies);
	atomic_add(batch->nr, &cor->hydration_regions);

	from.bdev = cor->origin_dev->bdev;
	from.sector = region_to_sector(cor, region);
	from.count = min(region_to_sector(cor, region + batch->nr), cor->ti->len) - from.sector;
	to = from;
	to.bdev = cor->dest_dev->bdev;
	atomic64_add(from.count, &cor->origin_read_sectors);
	batch->start_ns = ktime_get_ns();
	if (alloc_hydration_pages(cor, batch, from.count))
		submit_hydration_bios(cor, batch, from.bdev, REQ_OP_READ);
	else
		dm_kcopyd_copy(cor->kcopyd, &from, 1, &to, COR_KCOPYD_WRITE_UNCHANGED,
			       hydration_batch_complete, batch);
	return true;
}

/*
 * Keep regions in flight for prefetch and background hydration, by the
 * yield rule (see HYDRATION_BUSY_GAP): up to hydration_threshold regions
 * while the device is idle; while it is busy, one batch at a time, spaced
 * out so that user I/O keeps priority without starving the copy.
 */
static void do_hydration(struct cor *cor)
{
	unsigned int threshold, batch_size, in_flight, limit;
	unsigned long next;
	unsigned int failures;

	for (;;) {
		if (!test_bit(COR_HYDRATION_ACTIVE, &cor->flags) &&
		    list_empty_careful(&cor->prefetch_queue))
			return;
		if (test_bit(COR_SUSPENDED, &cor->flags) || get_mode(cor) != COR_MODE_RW)
			return;
		failures = READ_ONCE(cor->hydration_failures);
		if (failures && dm_cor_region_hydrated(cor->cmd,
						       READ_ONCE(cor->hydration_failed_region))) {
			/* Copied some other way (a read, a write) */
			WRITE_ONCE(cor->hydration_failures, 0);
			failures = 0;
		}
		if (failures >= HYDRATION_MAX_ATTEMPTS) {
			/* Background hydration and prefetch both give up */
			DMERR("%s: hydration gave up: region %lu failed to copy %u times",
			      dm_device_name(dm_table_get_md(cor->ti->table)),
			      READ_ONCE(cor->hydration_failed_region), failures);
			WRITE_ONCE(cor->hydration_failures, 0);
			atomic64_inc(&cor->hydration_errors);
			set_bit(COR_HYDRATION_FAILED, &cor->flags);
			clear_prefetch_queue(cor);
			clear_bit(COR_HYDRATION_ACTIVE, &cor->flags);
			set_bit(COR_EVENT_PENDING, &cor->flags);
			return;
		}
		next = READ_ONCE(cor->hydration_retry_at);
		if (failures && time_before(jiffies, next)) {
			wake_hydration_later(cor, next - jiffies);
			return;
		}

		threshold = READ_ONCE(cor->hydration_threshold);
		batch_size = READ_ONCE(cor->hydration_batch_size);
		in_flight = atomic_read(&cor->hydration_regions);
		limit = threshold;
		if (device_busy(cor)) {
			/* A batch's end wakes the worker */
			if (in_flight)
				return;
			next = READ_ONCE(cor->hydration_busy_next);
			if (time_before(jiffies, next)) {
				/* One wakeup per wait: each one costs the load too */
				wake_hydration_later(cor, next - jiffies);
				return;
			}
			limit = min(threshold, batch_size);
		}
		if (in_flight >= limit || (failures && in_flight))
			return;
		if (!start_hydration_batch(cor, min(batch_size, limit - in_flight)))
			return;
	}
}

/* The worker */

static void take_list(struct cor *cor, struct bio_list *dst, struct bio_list *src)
{
	spin_lock_irq(&cor->lock);
	bio_list_merge(dst, src);
	bio_list_init(src);
	spin_unlock_irq(&cor->lock);
}

static void process_copy_queue(struct cor *cor)
{
	struct region_op *op, *tmp;
	LIST_HEAD(ops);

	spin_lock_irq(&cor->lock);
	list_splice_init(&cor->copy_queue, &ops);
	spin_unlock_irq(&cor->lock);

	list_for_each_entry_safe(op, tmp, &ops, copy_entry) {
		list_del_init(&op->copy_entry);
		if (op->cold)
			issue_cold_write(cor, op);
		else
			issue_copy(cor, op);
	}
}

static void process_deferred_bios(struct cor *cor)
{
	struct bio_list bios = BIO_EMPTY_LIST;
	struct bio *bio;

	take_list(cor, &bios, &cor->deferred_bios);
	while ((bio = bio_list_pop(&bios))) {
		switch (map_data_bio(cor, bio)) {
		case DM_MAPIO_REMAPPED:
			submit_bio_noacct(bio);
			break;
		case DM_MAPIO_KILL:
			bio_io_error(bio);
			break;
		}
	}
}

static void process_deferred_discards(struct cor *cor)
{
	struct bio_list bios = BIO_EMPTY_LIST;
	struct bio *bio;

	take_list(cor, &bios, &cor->deferred_discards);
	while ((bio = bio_list_pop(&bios)))
		process_discard(cor, bio);
}

/*
 * Flushes and FUA completions wait for one commit, which covers every write
 * that completed before it started.
 */
static void process_commit(struct cor *cor)
{
	struct bio_list bios = BIO_EMPTY_LIST;
	blk_status_t status;
	struct bio *bio;

	take_list(cor, &bios, &cor->deferred_flushes);
	take_list(cor, &bios, &cor->deferred_completions);

	if (bio_list_empty(&bios)) {
		if (!test_and_clear_bit(COR_COMMIT_DUE, &cor->flags) ||
		    !dm_cor_metadata_changed(cor->cmd))
			return;
	}

	status = errno_to_blk_status(commit_metadata(cor));
	while ((bio = bio_list_pop(&bios))) {
		bio_ctx(bio)->flags |= COR_BIO_COMMITTED;
		if (status)
			bio->bi_status = status;
		bio_endio(bio);
	}
}

static void do_worker(struct work_struct *work)
{
	struct cor *cor = container_of(work, struct cor, worker);
	enum cor_mode mode;

	process_hydration_batches(cor);
	process_copy_queue(cor);
	process_deferred_bios(cor);
	process_copy_queue(cor);
	process_deferred_discards(cor);
	process_commit(cor);
	do_hydration(cor);

	if (dm_cor_nr_hydrated(cor->cmd) == cor->nr_regions &&
	    !test_and_set_bit(COR_HYDRATED_ANNOUNCED, &cor->flags)) {
		DMINFO("%s: every region is hydrated",
		       dm_device_name(dm_table_get_md(cor->ti->table)));
		/*
		 * Whoever the event wakes finds the state on disk.  In ro and
		 * fail mode the metadata failure was logged already.
		 */
		mode = get_mode(cor);
		if (commit_metadata(cor) && mode == COR_MODE_RW)
			DMERR("%s: commit after the last region was hydrated failed",
			      dm_device_name(dm_table_get_md(cor->ti->table)));
		dm_cor_metadata_release_hydrated(cor->cmd);
		set_bit(COR_EVENT_PENDING, &cor->flags);
	}
	if (test_and_clear_bit(COR_EVENT_PENDING, &cor->flags))
		dm_table_event(cor->ti->table);
}

/* Periodic commit; also retries bios deferred for lack of memory */
static void do_waker(struct work_struct *work)
{
	struct cor *cor = container_of(to_delayed_work(work), struct cor, waker);

	set_bit(COR_COMMIT_DUE, &cor->flags);
	wake_worker(cor);
	queue_delayed_work(cor->wq, &cor->waker, COMMIT_PERIOD);
}

/* Target methods: I/O */

static int cor_map(struct dm_target *ti, struct bio *bio)
{
	struct cor *cor = ti->private;
	struct cor_bio_ctx *ctx = bio_ctx(bio);
	int r;

	ctx->op = NULL;
	ctx->flags = 0;

	if (unlikely(get_mode(cor) == COR_MODE_FAIL))
		return DM_MAPIO_KILL;

	if (bio->bi_opf & REQ_PREFLUSH) {
		defer_bio(cor, &cor->deferred_flushes, bio);
		return DM_MAPIO_SUBMITTED;
	}

	switch (bio_op(bio)) {
	case REQ_OP_READ:
	case REQ_OP_WRITE:
		ctx->flags |= COR_BIO_USER_IO;
		atomic_inc(&cor->user_ios);
		if (bio_unchanged(bio))
			atomic64_inc(&cor->unchanged_writes);
		if (bio->bi_opf & REQ_FUA) {
			/*
			 * Completed only after a commit, which flushes the
			 * destination, so FUA would only force a second write
			 * through.  And it would let the write overtake, in
			 * dm-log-writes' log (FUA writes are logged at once,
			 * others at the next flush), the copy of its region
			 * that it waited for: a replay of the log would then
			 * put the origin's data over the write.
			 */
			bio->bi_opf &= ~REQ_FUA;
			ctx->flags |= COR_BIO_FUA;
		}
		r = map_data_bio(cor, bio);
		/* dm calls no end_io for a killed bio */
		if (r == DM_MAPIO_KILL)
			atomic_dec(&cor->user_ios);
		return r;
	case REQ_OP_DISCARD:
		defer_bio(cor, &cor->deferred_discards, bio);
		return DM_MAPIO_SUBMITTED;
	default:
		return DM_MAPIO_KILL;
	}
}

static int cor_endio(struct dm_target *ti, struct bio *bio, blk_status_t *error)
{
	struct cor *cor = ti->private;
	struct cor_bio_ctx *ctx = bio_ctx(bio);
	struct region_op *op = ctx->op;
	unsigned long flags, now;

	if (ctx->flags & COR_BIO_COMMITTED)
		return DM_ENDIO_DONE;

	if (ctx->flags & COR_BIO_USER_IO) {
		ctx->flags &= ~COR_BIO_USER_IO;
		/*
		 * The yield rule; a waiting worker checks again by itself.
		 * One store per tick at most: the cache line stays shared.
		 */
		now = jiffies;
		atomic_dec(&cor->user_ios);
		if (READ_ONCE(cor->last_user_io) != now)
			WRITE_ONCE(cor->last_user_io, now);
	}

	ctx->op = NULL;
	if (bio_data_dir(bio) == READ) {
		if (*error && (ctx->flags & COR_BIO_ORIGIN_READ))
			atomic64_inc(&cor->origin_read_errors);
		if (!op)
			return DM_ENDIO_DONE;
		if (*error) {
			release_op(cor, op, false, false, BLK_STS_OK);
			return DM_ENDIO_DONE;
		}
		/* The copy is issued from the worker: not on this read's path */
		spin_lock_irqsave(&cor->lock, flags);
		__queue_copy(cor, op);
		spin_unlock_irqrestore(&cor->lock, flags);
		wake_worker(cor);
		return DM_ENDIO_DONE;
	}

	if (bio_op(bio) != REQ_OP_WRITE)
		return DM_ENDIO_DONE;

	if (op) {
		/*
		 * Whole-region write: the region is now hydrated and dirty, or
		 * CLEAN for an unchanged write (a copy that cost us nothing)
		 */
		release_op(cor, op, !*error, !bio_unchanged(bio), BLK_STS_OK);
	} else if ((ctx->flags & COR_BIO_MARK_DIRTY) && !*error &&
		   get_mode(cor) == COR_MODE_RW) {
		dm_cor_mark_regions(cor->cmd, ctx->region, 1, true);
	}

	if ((ctx->flags & COR_BIO_FUA) && !*error) {
		defer_bio(cor, &cor->deferred_completions, bio);
		return DM_ENDIO_INCOMPLETE;
	}
	return DM_ENDIO_DONE;
}

/* Target methods: suspend and resume */

static void cor_presuspend(struct dm_target *ti)
{
	struct cor *cor = ti->private;

	/* No new hydration copies; postsuspend waits for those in flight */
	set_bit(COR_SUSPENDED, &cor->flags);
}

static void cor_presuspend_undo(struct dm_target *ti)
{
	struct cor *cor = ti->private;

	clear_bit(COR_SUSPENDED, &cor->flags);
	wake_worker(cor);
}

static void cor_postsuspend(struct dm_target *ti)
{
	struct cor *cor = ti->private;
	enum cor_mode mode;

	cancel_delayed_work_sync(&cor->waker);
	cancel_delayed_work_sync(&cor->hydration_waker);

	/* User bios are done, but copies started by completed reads may not be */
	wait_event(cor->ops_drained, !atomic_read(&cor->nr_ops));
	flush_workqueue(cor->wq);
	WRITE_ONCE(cor->shared->hydration_active,
		   test_bit(COR_HYDRATION_ACTIVE, &cor->flags));

	/* In ro and fail mode the metadata failure was logged already */
	mode = get_mode(cor);
	if (commit_metadata(cor) && mode == COR_MODE_RW)
		DMERR("%s: commit at suspend failed",
		      dm_device_name(dm_table_get_md(ti->table)));
}

static void cor_resume(struct dm_target *ti)
{
	struct cor *cor = ti->private;

	/* Before the first bio: the old table's suspend may have failed */
	mutex_lock(&cor->shared->commit_lock);
	__inherit_metadata_failure(cor);
	mutex_unlock(&cor->shared->commit_lock);

	clear_bit(COR_SUSPENDED, &cor->flags);
	if (test_and_clear_bit(COR_BACKGROUND_HYDRATION_PENDING, &cor->flags) ||
	    READ_ONCE(cor->shared->hydration_active))
		set_bit(COR_HYDRATION_ACTIVE, &cor->flags);
	queue_delayed_work(cor->wq, &cor->waker, COMMIT_PERIOD);
	wake_worker(cor);
}

/* Target methods: status and messages */

static void emit_features(struct cor *cor, char *result, unsigned int maxlen,
			  ssize_t *sz_ptr)
{
	bool hydration = test_bit(COR_BACKGROUND_HYDRATION, &cor->flags);
	bool no_passdown = !test_bit(COR_DISCARD_PASSDOWN, &cor->flags);
	ssize_t sz = *sz_ptr;

	DMEMIT("%u ", hydration + no_passdown);
	if (hydration)
		DMEMIT("background_hydration ");
	if (no_passdown)
		DMEMIT("no_discard_passdown ");
	*sz_ptr = sz;
}

/*
 * Status format (STATUSTYPE_INFO):
 *
 * <metadata block size> <#used metadata blocks>/<#total metadata blocks>
 * <region size> <#hydrated regions>/<#total regions> <#hydrating regions>
 * <#dirty regions> <mode> <#features> <features>* <#core args> <core args>*
 * <#counter words> <counter name> <value> ...
 *
 * Counters: origin_read_sectors, copies_done, copies_failed,
 * origin_read_errors, hydration_active (0/1), hydration_stopped_on_error
 * (0/1), hydration_errors (times hydration gave up on a region),
 * prefetch_queued (regions still queued by prefetch messages),
 * unchanged_writes (writes received with REQ_WRITE_UNCHANGED).
 *
 * Volatile metadata prints "- -/-" for the two metadata fields.
 */
static void cor_status(struct dm_target *ti, status_type_t type,
		       unsigned int status_flags, char *result, unsigned int maxlen)
{
	struct cor *cor = ti->private;
	u64 used, total;
	unsigned int i;
	ssize_t sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		if (dm_cor_metadata_is_volatile(cor->cmd)) {
			DMEMIT("- -/- ");
		} else {
			dm_cor_metadata_usage(cor->cmd, &used, &total);
			DMEMIT("%u %llu/%llu ", DM_COR_METADATA_BLOCK_SECTORS, used, total);
		}
		DMEMIT("%llu %lu/%lu %d %lu %s ",
		       (unsigned long long)cor->region_size,
		       dm_cor_nr_hydrated(cor->cmd), cor->nr_regions,
		       atomic_read(&cor->nr_copies), dm_cor_nr_dirty(cor->cmd),
		       mode_name(get_mode(cor)));
		emit_features(cor, result, maxlen, &sz);
		DMEMIT("4 hydration_threshold %u hydration_batch_size %u ",
		       READ_ONCE(cor->hydration_threshold),
		       READ_ONCE(cor->hydration_batch_size));
		DMEMIT("18 origin_read_sectors %lld copies_done %lld ",
		       (long long)atomic64_read(&cor->origin_read_sectors),
		       (long long)atomic64_read(&cor->copies_done));
		DMEMIT("copies_failed %lld origin_read_errors %lld ",
		       (long long)atomic64_read(&cor->copies_failed),
		       (long long)atomic64_read(&cor->origin_read_errors));
		DMEMIT("hydration_active %d hydration_stopped_on_error %d ",
		       test_bit(COR_HYDRATION_ACTIVE, &cor->flags),
		       test_bit(COR_HYDRATION_FAILED, &cor->flags));
		DMEMIT("hydration_errors %lld prefetch_queued %lu unchanged_writes %lld",
		       (long long)atomic64_read(&cor->hydration_errors),
		       READ_ONCE(cor->prefetch_regions),
		       (long long)atomic64_read(&cor->unchanged_writes));
		break;

	case STATUSTYPE_TABLE:
		DMEMIT("%s %s %s", cor->origin_dev->name, cor->dest_dev->name,
		       cor->metadata_dev ? cor->metadata_dev->name : "-");
		for (i = 0; i < cor->nr_ctr_args; i++)
			DMEMIT(" %s", cor->ctr_args[i]);
		break;

	default:
		*result = '\0';
		break;
	}
}

/* Print the set bits of a bitmap window as inclusive ranges "a-b" or "a" */
static int emit_bitmap(struct cor *cor, unsigned int argc, char **argv,
		       char *result, unsigned int maxlen)
{
	unsigned long first, nr, start, end, run_end;
	ssize_t sz = 0;
	bool dirty;

	if (argc != 4) {
		DMERR("bitmap: usage: bitmap hydrated|dirty <first_region> <nr_regions>");
		return -EINVAL;
	}
	if (!strcasecmp(argv[1], "hydrated")) {
		dirty = false;
	} else if (!strcasecmp(argv[1], "dirty")) {
		dirty = true;
	} else {
		DMERR("bitmap: unknown bitmap '%s' (hydrated or dirty)", argv[1]);
		return -EINVAL;
	}
	if (kstrtoul(argv[2], 10, &first) || kstrtoul(argv[3], 10, &nr) ||
	    first >= cor->nr_regions || nr > cor->nr_regions - first) {
		DMERR("bitmap: window %s+%s is outside regions 0-%lu",
		      argv[2], argv[3], cor->nr_regions - 1);
		return -EINVAL;
	}

	end = first + nr;
	start = dm_cor_find_next_region(cor->cmd, dirty, true, first, end);
	while (start < end) {
		run_end = dm_cor_find_next_region(cor->cmd, dirty, false, start, end);
		if (run_end - start == 1)
			DMEMIT("%s%lu", sz ? " " : "", start);
		else
			DMEMIT("%s%lu-%lu", sz ? " " : "", start, run_end - 1);
		start = dm_cor_find_next_region(cor->cmd, dirty, true, run_end, end);
	}
	if (!sz)
		*result = '\0';
	return 1;
}

static int set_tunable(struct cor *cor, unsigned int argc, char **argv,
		       unsigned int *tunable, unsigned int max)
{
	unsigned int value;

	if (argc != 2 || kstrtouint(argv[1], 10, &value) || !value || value > max) {
		DMERR("%s: expects one number between 1 and %u", argv[0], max);
		return -EINVAL;
	}
	WRITE_ONCE(*tunable, value);
	return 0;
}

static int hydration_message(struct cor *cor, unsigned int argc, char **argv)
{
	if (argc == 2 && !strcasecmp(argv[1], "start")) {
		if (get_mode(cor) != COR_MODE_RW) {
			DMERR("hydration start: device is in %s mode", mode_name(get_mode(cor)));
			return -EINVAL;
		}
		WRITE_ONCE(cor->hydration_failures, 0);
		clear_bit(COR_HYDRATION_FAILED, &cor->flags);
		set_bit(COR_HYDRATION_ACTIVE, &cor->flags);
		wake_worker(cor);
		return 0;
	}
	if (argc == 2 && !strcasecmp(argv[1], "stop")) {
		clear_bit(COR_HYDRATION_ACTIVE, &cor->flags);
		return 0;
	}
	DMERR("hydration: usage: hydration start|stop");
	return -EINVAL;
}

/* prefetch <start_sector> <nr_sectors>: queue the regions, return at once */
static int prefetch_message(struct cor *cor, unsigned int argc, char **argv)
{
	struct prefetch_range *pr;
	sector_t start, nr;
	int r = 0;

	if (argc != 3 || kstrtoull(argv[1], 10, &start) || kstrtoull(argv[2], 10, &nr) ||
	    !nr || start >= cor->ti->len || nr > cor->ti->len - start) {
		DMERR("prefetch: usage: prefetch <start_sector> <nr_sectors>, within 0-%llu",
		      (unsigned long long)cor->ti->len - 1);
		return -EINVAL;
	}
	if (get_mode(cor) != COR_MODE_RW) {
		DMERR("prefetch: device is in %s mode", mode_name(get_mode(cor)));
		return -EINVAL;
	}

	pr = kmalloc(sizeof(*pr), GFP_KERNEL);
	if (!pr)
		return -ENOMEM;
	pr->next = start >> cor->region_shift;
	pr->end = ((start + nr - 1) >> cor->region_shift) + 1;

	spin_lock_irq(&cor->lock);
	if (cor->nr_prefetch_ranges >= MAX_PREFETCH_RANGES)
		r = -EBUSY;
	else
		__queue_prefetch(cor, pr, false);
	spin_unlock_irq(&cor->lock);

	if (r) {
		DMERR("prefetch: %u ranges are already queued", MAX_PREFETCH_RANGES);
		kfree(pr);
		return r;
	}
	WRITE_ONCE(cor->hydration_failures, 0);
	clear_bit(COR_HYDRATION_FAILED, &cor->flags);
	wake_worker(cor);
	return 0;
}

static int cor_message(struct dm_target *ti, unsigned int argc, char **argv,
		       char *result, unsigned int maxlen)
{
	struct cor *cor = ti->private;

	if (!argc)
		return -EINVAL;

	if (!strcasecmp(argv[0], "bitmap"))
		return emit_bitmap(cor, argc, argv, result, maxlen);

	if (!strcasecmp(argv[0], "hydration"))
		return hydration_message(cor, argc, argv);

	if (!strcasecmp(argv[0], "prefetch"))
		return prefetch_message(cor, argc, argv);

	if (!strcasecmp(argv[0], "hydration_threshold"))
		return set_tunable(cor, argc, argv, &cor->hydration_threshold,
				   MAX_HYDRATION_THRESHOLD);

	if (!strcasecmp(argv[0], "hydration_batch_size"))
		return set_tunable(cor, argc, argv, &cor->hydration_batch_size,
				   MAX_HYDRATION_BATCH_SIZE);

	DMERR("%s: unsupported message '%s'",
	      dm_device_name(dm_table_get_md(ti->table)), argv[0]);
	return -EINVAL;
}

/* Target methods: limits */

static int cor_iterate_devices(struct dm_target *ti, iterate_devices_callout_fn fn,
			       void *data)
{
	struct cor *cor = ti->private;
	int r;

	r = fn(ti, cor->dest_dev, 0, ti->len, data);
	if (!r)
		r = fn(ti, cor->origin_dev, 0, ti->len, data);
	return r;
}

static void cor_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct cor *cor = ti->private;
	u64 io_opt_sectors = limits->io_opt >> SECTOR_SHIFT;

	/* Keep a stacked io_opt that is already a multiple of the region size */
	if (io_opt_sectors < cor->region_size || do_div(io_opt_sectors, cor->region_size))
		limits->io_opt = cor->region_size << SECTOR_SHIFT;

	/* Discards are always accepted: whole regions are marked, see process_discard */
	limits->discard_granularity = cor->region_size << SECTOR_SHIFT;
	limits->max_hw_discard_sectors = round_down(UINT_MAX >> SECTOR_SHIFT, cor->region_size);
	limits->max_discard_sectors = limits->max_hw_discard_sectors;
}

/* Constructor and destructor */

static struct kmem_cache *region_op_cache;

/* Read-only: lets tests and tools see whether the kernel has the flag */
static bool req_write_unchanged = COR_HAVE_WRITE_UNCHANGED;
module_param(req_write_unchanged, bool, 0444);
MODULE_PARM_DESC(req_write_unchanged,
		 "Y when copy writes carry REQ_WRITE_UNCHANGED and received unchanged writes keep regions clean (the kernel has the flag)");

/*
 * The devices are opened writable ones first: dm_get_device() on a device
 * the table already holds with fewer rights replaces that dm_dev, which
 * would leave a stale pointer behind if the origin (read-only) came first.
 */
static int open_devices(struct cor *cor, const char *origin_path, const char *dest_path,
			const char *metadata_path, char **error)
{
	struct block_device *metadata_bdev;
	int r;

	r = dm_get_device(cor->ti, dest_path, COR_OPEN_READ | COR_OPEN_WRITE, &cor->dest_dev);
	if (r) {
		*error = "Error opening destination device";
		return r;
	}

	if (!strcmp(metadata_path, "-")) {
		/* User writes could not be tracked across a restart */
		if (dm_table_get_mode(cor->ti->table) & COR_OPEN_WRITE) {
			*error = "Volatile metadata requires a read-only table";
			return -EINVAL;
		}
	} else {
		r = dm_get_device(cor->ti, metadata_path, COR_OPEN_READ | COR_OPEN_WRITE,
				  &cor->metadata_dev);
		if (r) {
			*error = "Error opening metadata device";
			return r;
		}
	}

	r = dm_get_device(cor->ti, origin_path, COR_OPEN_READ, &cor->origin_dev);
	if (r) {
		*error = "Error opening origin device";
		return r;
	}

	metadata_bdev = cor->metadata_dev ? cor->metadata_dev->bdev : NULL;
	if (cor->dest_dev->bdev == cor->origin_dev->bdev) {
		*error = "Origin and destination are the same device";
		return -EINVAL;
	}
	if (metadata_bdev == cor->origin_dev->bdev || metadata_bdev == cor->dest_dev->bdev) {
		*error = "Metadata device must differ from origin and destination";
		return -EINVAL;
	}
	if (bdev_nr_sectors(cor->origin_dev->bdev) < cor->ti->len) {
		*error = "Origin device is too small";
		return -EINVAL;
	}
	if (bdev_nr_sectors(cor->dest_dev->bdev) < cor->ti->len) {
		*error = "Destination device is too small";
		return -EINVAL;
	}
	return 0;
}

static int parse_region_size(struct cor *cor, struct dm_arg_set *as, char **error)
{
	unsigned int region_size;

	if (kstrtouint(dm_shift_arg(as), 10, &region_size)) {
		*error = "Invalid region size";
		return -EINVAL;
	}
	if (region_size < MIN_REGION_SECTORS || region_size > MAX_REGION_SECTORS) {
		*error = "Region size must be between 8 and 2097152 sectors";
		return -EINVAL;
	}
	if (!is_power_of_2(region_size)) {
		*error = "Region size must be a power of two";
		return -EINVAL;
	}
	if ((region_size << SECTOR_SHIFT) < bdev_logical_block_size(cor->origin_dev->bdev) ||
	    (region_size << SECTOR_SHIFT) < bdev_logical_block_size(cor->dest_dev->bdev)) {
		*error = "Region size is smaller than a logical block";
		return -EINVAL;
	}

	cor->region_size = region_size;
	cor->region_shift = __ffs(region_size);
	cor->nr_regions = dm_sector_div_up(cor->ti->len, region_size);
	return 0;
}

static int parse_optional_args(struct cor *cor, struct dm_arg_set *as, char **error)
{
	static const struct dm_arg args[] = {
		{0, 6, "Invalid number of optional arguments"},
		{1, MAX_HYDRATION_THRESHOLD, "Invalid hydration_threshold"},
		{1, MAX_HYDRATION_BATCH_SIZE, "Invalid hydration_batch_size"},
	};
	bool passdown = true;
	unsigned int argc;
	const char *name;
	int r;

	/* The optional argument group may be left out altogether */
	argc = 0;
	if (as->argc) {
		r = dm_read_arg_group(&args[0], as, &argc, error);
		if (r)
			return r;
	}

	while (argc) {
		name = dm_shift_arg(as);
		argc--;

		if (!strcasecmp(name, "background_hydration")) {
			set_bit(COR_BACKGROUND_HYDRATION, &cor->flags);
			set_bit(COR_BACKGROUND_HYDRATION_PENDING, &cor->flags);
		} else if (!strcasecmp(name, "no_discard_passdown")) {
			passdown = false;
		} else if (!strcasecmp(name, "hydration_threshold") && argc) {
			r = dm_read_arg(&args[1], as, &cor->hydration_threshold, error);
			argc--;
		} else if (!strcasecmp(name, "hydration_batch_size") && argc) {
			r = dm_read_arg(&args[2], as, &cor->hydration_batch_size, error);
			argc--;
		} else {
			*error = "Invalid or incomplete optional argument";
			r = -EINVAL;
		}
		if (r)
			return r;
	}

	if (as->argc) {
		*error = "Too many arguments";
		return -EINVAL;
	}

	if (passdown && !bdev_max_discard_sectors(cor->dest_dev->bdev))
		DMWARN("%s: destination does not support discards; not passing them down",
		       dm_device_name(dm_table_get_md(cor->ti->table)));
	else if (passdown)
		set_bit(COR_DISCARD_PASSDOWN, &cor->flags);
	return 0;
}

/* Keep the table line from the region size on, printed back by status */
static int copy_ctr_args(struct cor *cor, unsigned int argc, char **argv, char **error)
{
	const char **copy;
	unsigned int i;

	copy = kcalloc(argc, sizeof(*copy), GFP_KERNEL);
	if (!copy)
		goto bad;
	cor->ctr_args = copy;
	for (i = 0; i < argc; i++) {
		copy[i] = kstrdup(argv[i], GFP_KERNEL);
		if (!copy[i])
			goto bad;
		cor->nr_ctr_args++;
	}
	return 0;
bad:
	*error = "Cannot allocate the table line copy";
	return -ENOMEM;
}

static void free_ctr_args(struct cor *cor)
{
	unsigned int i;

	for (i = 0; i < cor->nr_ctr_args; i++)
		kfree(cor->ctr_args[i]);
	kfree(cor->ctr_args);
}

static void put_devices(struct cor *cor)
{
	if (cor->metadata_dev)
		dm_put_device(cor->ti, cor->metadata_dev);
	if (cor->dest_dev)
		dm_put_device(cor->ti, cor->dest_dev);
	if (cor->origin_dev)
		dm_put_device(cor->ti, cor->origin_dev);
}

static int parse_table(struct cor *cor, unsigned int argc, char **argv, char **error)
{
	struct dm_arg_set as = { .argc = argc, .argv = argv };
	int r;

	if (argc < 4) {
		*error = "Invalid number of arguments";
		return -EINVAL;
	}

	r = open_devices(cor, argv[0], argv[1], argv[2], error);
	if (r)
		return r;
	dm_consume_args(&as, 3);

	r = parse_region_size(cor, &as, error);
	if (!r)
		r = parse_optional_args(cor, &as, error);
	if (!r)
		r = copy_ctr_args(cor, argc - 3, argv + 3, error);
	return r;
}

static void init_state(struct cor *cor)
{
	unsigned int i;

	spin_lock_init(&cor->lock);
	for (i = 0; i < ARRAY_SIZE(cor->op_table); i++)
		INIT_HLIST_HEAD(&cor->op_table[i]);
	bio_list_init(&cor->deferred_bios);
	bio_list_init(&cor->deferred_discards);
	bio_list_init(&cor->deferred_flushes);
	bio_list_init(&cor->deferred_completions);
	INIT_LIST_HEAD(&cor->copy_queue);
	INIT_LIST_HEAD(&cor->hydration_done);
	INIT_LIST_HEAD(&cor->prefetch_queue);
	atomic_set(&cor->nr_ops, 0);
	atomic_set(&cor->cold_read_pages, 0);
	atomic_set(&cor->hydration_pages, 0);
	atomic_set(&cor->nr_copies, 0);
	atomic_set(&cor->hydration_regions, 0);
	atomic_set(&cor->user_ios, 0);
	cor->last_user_io = jiffies - HYDRATION_IDLE_WINDOW;
	cor->hydration_busy_next = jiffies;
	atomic64_set(&cor->hydration_errors, 0);
	atomic64_set(&cor->unchanged_writes, 0);
	init_waitqueue_head(&cor->ops_drained);
	INIT_WORK(&cor->worker, do_worker);
	INIT_DELAYED_WORK(&cor->waker, do_waker);
	INIT_DELAYED_WORK(&cor->hydration_waker, do_hydration_waker);
	atomic64_set(&cor->origin_read_sectors, 0);
	atomic64_set(&cor->copies_done, 0);
	atomic64_set(&cor->copies_failed, 0);
	atomic64_set(&cor->origin_read_errors, 0);
	cor->mode = COR_MODE_RW;
}

/* Defaults for the tunables the table line does not set */
static void set_default_tunables(struct cor *cor)
{
	unsigned int batch = max(DEFAULT_HYDRATION_BATCH_SECTORS >> cor->region_shift, 1UL);

	if (!cor->hydration_batch_size)
		cor->hydration_batch_size = batch;
	if (!cor->hydration_threshold)
		cor->hydration_threshold = batch * DEFAULT_HYDRATION_BATCHES;
}

/*
 * Construct a cor device:
 *
 * <start> <len> cor <origin dev> <destination dev> <metadata dev | ->
 *     <region size> [<#opt args> <opt arg>*]
 *
 * Optional args:
 *   background_hydration
 *   hydration_threshold <#regions>
 *   hydration_batch_size <#regions>
 *   no_discard_passdown
 */
static int cor_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct cor *cor;
	int r;

	cor = kzalloc(sizeof(*cor), GFP_KERNEL);
	if (!cor) {
		ti->error = "Cannot allocate cor context";
		return -ENOMEM;
	}
	cor->ti = ti;
	init_state(cor);

	r = parse_table(cor, argc, argv, &ti->error);
	if (r)
		goto out_put_devices;
	set_default_tunables(cor);

	cor->shared = get_shared_metadata(ti, cor->metadata_dev ? cor->metadata_dev->bdev : NULL,
					  cor->region_size);
	if (IS_ERR(cor->shared)) {
		r = PTR_ERR(cor->shared);
		goto out_put_devices;
	}
	cor->cmd = cor->shared->cmd;
	/* The table this one replaces may have lost its metadata device */
	if (dm_cor_metadata_failed(cor->cmd))
		cor->mode = COR_MODE_RO;

	r = mempool_init_slab_pool(&cor->op_pool, MIN_REGION_OPS, region_op_cache);
	if (r) {
		ti->error = "Cannot allocate the region op mempool";
		goto out_put_metadata;
	}

	r = bioset_init(&cor->discard_bs, BIO_POOL_SIZE, 0, 0);
	if (r) {
		ti->error = "Cannot allocate the discard bioset";
		goto out_mempool;
	}

	r = bioset_init(&cor->cold_read_bs, BIO_POOL_SIZE, 0, BIOSET_NEED_BVECS);
	if (r) {
		ti->error = "Cannot allocate the cold read bioset";
		goto out_bioset;
	}

	r = bioset_init(&cor->hydration_bs, BIO_POOL_SIZE, 0, BIOSET_NEED_BVECS);
	if (r) {
		ti->error = "Cannot allocate the hydration bioset";
		goto out_cold_read_bioset;
	}

	cor->kcopyd = dm_kcopyd_client_create(NULL);
	if (IS_ERR(cor->kcopyd)) {
		r = PTR_ERR(cor->kcopyd);
		ti->error = "Cannot create the kcopyd client";
		goto out_hydration_bioset;
	}

	cor->wq = alloc_workqueue("dm-" DM_MSG_PREFIX, WQ_MEM_RECLAIM, 0);
	if (!cor->wq) {
		r = -ENOMEM;
		ti->error = "Cannot allocate the workqueue";
		goto out_kcopyd;
	}

	r = dm_set_target_max_io_len(ti, cor->region_size);
	if (r) {
		ti->error = "Cannot set the maximum I/O length";
		goto out_wq;
	}

	ti->num_flush_bios = 1;
	ti->flush_supported = true;
	ti->num_discard_bios = 1;
	ti->discards_supported = true;
	ti->per_io_data_size = sizeof(struct cor_bio_ctx);
	ti->private = cor;
	return 0;

out_wq:
	destroy_workqueue(cor->wq);
out_kcopyd:
	dm_kcopyd_client_destroy(cor->kcopyd);
out_hydration_bioset:
	bioset_exit(&cor->hydration_bs);
out_cold_read_bioset:
	bioset_exit(&cor->cold_read_bs);
out_bioset:
	bioset_exit(&cor->discard_bs);
out_mempool:
	mempool_exit(&cor->op_pool);
out_put_metadata:
	put_shared_metadata(cor->shared);
out_put_devices:
	put_devices(cor);
	free_ctr_args(cor);
	kfree(cor);
	return r;
}

static void cor_dtr(struct dm_target *ti)
{
	struct cor *cor = ti->private;

	cancel_delayed_work_sync(&cor->waker);
	cancel_delayed_work_sync(&cor->hydration_waker);
	destroy_workqueue(cor->wq);
	clear_prefetch_queue(cor);
	dm_kcopyd_client_destroy(cor->kcopyd);
	bioset_exit(&cor->hydration_bs);
	bioset_exit(&cor->cold_read_bs);
	bioset_exit(&cor->discard_bs);
	mempool_exit(&cor->op_pool);
	put_shared_metadata(cor->shared);
	put_devices(cor);
	free_ctr_args(cor);
	kfree(cor);
}

/* Module */

static struct target_type cor_target = {
	.name = "cor",
	.version = {1, 0, 0},
	.module = THIS_MODULE,
	.ctr = cor_ctr,
	.dtr = cor_dtr,
	.map = cor_map,
	.end_io = cor_endio,
	.presuspend = cor_presuspend,
	.presuspend_undo = cor_presuspend_undo,
	.postsuspend = cor_postsuspend,
	.resume = cor_resume,
	.status = cor_status,
	.message = cor_message,
	.io_hints = cor_io_hints,
	.iterate_devices = cor_iterate_devices,
};

static int __init dm_cor_init(void)
{
	int r;

	region_op_cache = KMEM_CACHE(region_op, 0);
	if (!region_op_cache)
		return -ENOMEM;

	r = dm_register_target(&cor_target);
	if (r < 0) {
		DMERR("Failed to register the cor target");
		kmem_cache_destroy(region_op_cache);
	}
	return r;
}

static void __exit dm_cor_exit(void)
{
	dm_unregister_target(&cor_target);
	kmem_cache_destroy(region_op_cache);
}

module_init(dm_cor_init);
module_exit(dm_cor_exit);

MODULE_DESCRIPTION(DM_NAME " copy-on-read target");
MODULE_AUTHOR("The dm-cor developers");
MODULE_LICENSE("GPL");
MODULE_ALIAS("dm-cor");
