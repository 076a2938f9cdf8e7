// SPDX-License-Identifier: GPL-2.0
/*
 * cor-race: model-checked concurrent readers and writers (dm-cor selftests)
 *
 *   cor-race [run] DEV --blocks N --origin-seed S [options]
 *   cor-race verify DEV --model FILE [--buffered]
 *
 * DEV's blocks [0, N) must hold the origin pattern of seed S (cor-pattern
 * stamp ... S), version 0, when the run starts (or the versions of
 * --model-in).  Writer threads own disjoint stripes of blocks (stripe index
 * % writers) and overwrite runs of 1..stripe blocks of their stripes with
 * version v+1 of the pattern; each block's "started" version is published
 * before its write is issued and its "completed" version after the write
 * returns.  Reader threads read random ranges, half block-aligned and half
 * at arbitrary 512-byte offsets and lengths (so they straddle regions and
 * blocks), and check every byte against the model: each block must be the
 * pattern of a version in [completed at read start, started at read end]
 * (version 0 is the origin pattern).  A block mixing such versions, at
 * sector or even byte granularity, is only possible while a write to it is
 * in flight and is tolerated (counted) unless --strict-torn: the VM's
 * file-backed disks copy a sector racing a write byte by byte, and no
 * dm-cor fault can produce a byte-wise mix of two versions of one block
 * (stale or misdirected data matches neither pattern byte for byte).
 * Anything else, and any I/O error, is a violation: the tool stops and
 * exits 1 with a precise message.
 * At the end every block is compared with the model exactly.
 *
 * Options:
 *   --blocks N          blocks (of --block-size) under test, from block 0
 *   --origin-seed S     seed of the origin pattern (and of the writes)
 *   --threads T         T/2 writers and T - T/2 readers (default 4)
 *   --readers R         reader threads (overrides --threads)
 *   --writers W         writer threads (overrides --threads)
 *   --seconds X         run time (default 10)
 *   --block-size B      pattern block size (default 4096)
 *   --max-io-blocks K   largest I/O in blocks (default 8)
 *   --stripe S          blocks per ownership stripe (default 4)
 *   --window W          send 3/4 of the I/O to a W-block window that sweeps
 *                       the device during the run (default 0: uniform)
 *   --flush-every K     fdatasync after every K-th write of a writer (0: never)
 *   --rng-seed R        seed of the random choices (default: time)
 *   --model-in FILE     start from this model instead of all version 0
 *   --model-out FILE    write the final model here
 *   --strict-torn       treat sector- or byte-mixed blocks under a racing
 *                       write as violations
 *   --buffered          do not use O_DIRECT
 *   --grace G           extra seconds before the hang watchdog fires
 *                       (default 120); a hang exits 3
 *   --no-final-verify   skip the final full comparison
 * Exit: 0 ok, 1 violation or I/O error, 2 usage error, 3 hang.
 */
#include "cor-common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

struct opts {
	const char *dev;
	__u64 nblocks;
	__u64 seed;
	bool have_seed, have_blocks;
	unsigned int readers, writers;
	double seconds;
	size_t bsize;
	unsigned int max_io_blocks;
	unsigned int stripe;
	__u64 window;
	unsigned int flush_every;
	__u64 rng_seed;
	const char *model_in, *model_out, *model;
	bool strict_torn, buffered, no_final_verify;
	unsigned int grace;
};

static struct opts o = {
	.readers = 2, .writers = 2, .seconds = 10, .bsize = COR_DEFAULT_BSIZE,
	.max_io_blocks = 8, .stripe = 4, .grace = 120,
};

static int fd = -1;
static atomic_ullong *started, *completed;
static atomic_bool stop;
static atomic_int violations;
static atomic_ullong n_reads, n_read_bytes, n_writes, n_write_blocks,
		     n_flushes, n_torn, n_checked_blocks;
static struct timespec t_start;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;

static double elapsed(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t_start.tv_sec) +
	       (double)(t.tv_nsec - t_start.tv_nsec) / 1e9;
}

static void violation(const char *fmt, ...);

static void violation(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&report_lock);
	fprintf(stderr, "cor-race: VIOLATION at %.2fs: ", elapsed());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&report_lock);
	atomic_fetch_add(&violations, 1);
	atomic_store(&stop, true);
}

static inline __u64 rnd(__u64 *st)
{
	return splitmix64(st);
}

/* Pick the first block of an I/O: uniform, or 3/4 in the sweeping window. */
static __u64 pick_block(__u64 *st)
{
	__u64 pos;

	if (!o.window || o.window >= o.nblocks || rnd(st) % 4 == 0)
		return rnd(st) % o.nblocks;
	pos = (__u64)(elapsed() / o.seconds * (double)(o.nblocks - o.window));
	if (pos > o.nblocks - o.window)
		pos = o.nblocks - o.window;
	return pos + rnd(st) % o.window;
}

/* ------------------------------------------------------------- writers */

struct wctx {
	unsigned int id;
	__u64 rng;
};

static void *writer_thread(void *arg)
{
	struct wctx *w = arg;
	__u64 nstripes = (o.nblocks + o.stripe - 1) / o.stripe;
	__u64 owned = nstripes > w->id ?
			 (nstripes - w->id + o.writers - 1) / o.writers : 0;
	__u8 *buf = xalloc_aligned((size_t)o.stripe * o.bsize);
	__u64 *vers = calloc(o.stripe, sizeof(*vers));
	unsigned long long mywrites = 0;

	if (!owned || !vers)
		return NULL;
	while (!atomic_load(&stop)) {
		__u64 s, first, end, a, n, i;
		int r;

		/* a stripe of ours, preferably near where pick_block points */
		s = pick_block(&w->rng) / o.stripe;
		s = s - (s % o.writers) + w->id;
		if (s >= nstripes)
			s = w->id + o.writers * (rnd(&w->rng) % owned);
		first = s * o.stripe;
		end = first + o.stripe < o.nblocks ? first + o.stripe : o.nblocks;
		a = first + rnd(&w->rng) % (end - first);
		n = 1 + rnd(&w->rng) % (end - a);
		for (i = 0; i < n; i++) {
			vers[i] = atomic_load(&started[a + i]) + 1;
			atomic_store(&started[a + i], vers[i]);
			cor_fill(buf + i * o.bsize, o.bsize, o.seed, a + i, vers[i]);
		}
		r = full_pwrite(fd, buf, n * o.bsize, (off_t)(a * o.bsize));
		if (r) {
			violation("writer %u: write of blocks %llu..%llu failed: %s", w->id, a,
				  a + n - 1, strerror(-r));
			break;
		}
		for (i = 0; i < n; i++)
			atomic_store(&completed[a + i], vers[i]);
		atomic_fetch_add(&n_writes, 1);
		atomic_fetch_add(&n_write_blocks, n);
		if (o.flush_every && ++mywrites % o.flush_every == 0) {
			if (fdatasync(fd)) {
				violation("writer %u: fdatasync failed: %s", w->id,
					  strerror(errno));
				break;
			}
			atomic_fetch_add(&n_flushes, 1);
		}
	}
	free(vers);
	free(buf);
	return NULL;
}

/* ------------------------------------------------------------- checking */

/*
 * Does @got (bytes [@bs, @be) of block @blk) equal version @v of the block?
 * @exp is a scratch block.
 */
static bool matches(const __u8 *got, __u64 blk, size_t bs, size_t be,
		    __u64 v, __u8 *exp)
{
	cor_fill(exp, o.bsize, o.seed, blk, v);
	return !memcmp(exp + bs, got, be - bs);
}

/*
 * Whose data is the sector @got (@len bytes)?  Searches sector slots of the
 * blocks within 256 of @blk, versions 0..started (at most 64 each), so that
 * misdirected or stale-but-ours data is named; "zeroes" or "unknown"
 * (e.g. stale destination contents) otherwise.
 */
static void identify_sector(const __u8 *got, size_t len, __u64 blk,
			    __u8 *exp, char *out, size_t n)
{
	__u64 first = blk > 256 ? blk - 256 : 0;
	__u64 last = blk + 256 < o.nblocks ? blk + 256 : o.nblocks - 1;
	__u64 b, v, newest;
	size_t s;

	if (all_zero(got, len)) {
		snprintf(out, n, "zeroes");
		return;
	}
	for (b = first; b <= last; b++) {
		newest = atomic_load(&started[b]);
		for (v = 0; v <= newest && v < 64; v++) {
			cor_fill(exp, o.bsize, o.seed, b, v);
			for (s = 0; s + len <= o.bsize; s += SECTOR_SIZE)
				if (!memcmp(exp + s, got, len)) {
					snprintf(out, n,
						 "it is sector %zu of block %llu version %llu",
						 s / SECTOR_SIZE, b, v);
					return;
				}
		}
	}
	snprintf(out, n, "not from any block %llu..%llu: stale or foreign data", first, last);
}

/*
 * Byte map of the sector [@bs, @be) of block @blk against versions
 * newest-3..newest: runs of "first-last:vN" (or "?" for no version), then the
 * first unmatched bytes next to what the newest version holds there.
 */
static void byte_map(const __u8 *got, __u64 blk, size_t bs, size_t be,
		     __u64 newest, char *out, size_t n)
{
	__u64 lo = newest > 3 ? newest - 3 : 0, nv = newest - lo + 1, j;
	__u8 *vers = xalloc_aligned(nv * o.bsize);
	size_t i, run = bs, bad = be, used = 0;
	int cls = -2, c;

	for (j = 0; j < nv; j++)
		cor_fill(vers + j * o.bsize, o.bsize, o.seed, blk, lo + j);
	out[0] = 0;
	for (i = bs; i <= be; i++) {
		c = -1;
		for (j = nv; i < be && j-- > 0;)
			if (vers[j * o.bsize + i] == got[i - bs]) {
				c = (int)j;
				break;
			}
		if (i < be && c < 0 && bad == be)
			bad = i;
		if (i == be || (c != cls && i > bs)) {
			if (used < n)
				used += snprintf(out + used, n - used, cls < 0 ? "%zu-%zu:? " :
						 "%zu-%zu:v%llu ", run, i - 1,
						 lo + (__u64)(cls < 0 ? 0 : cls));
			run = i;
		}
		cls = c;
	}
	if (bad < be && used < n) {
		used += snprintf(out + used, n - used, "; at %zu got", bad);
		for (i = bad; i < bad + 8 && i < be && used < n; i++)
			used += snprintf(out + used, n - used, " %02x", got[i - bs]);
		for (i = bad; i < bad + 8 && i < be && used < n; i++)
			used += snprintf(out + used, n - used, "%s%02x",
					 i == bad ? ", v-newest " : " ",
					 vers[(nv - 1) * o.bsize + i]);
	}
	free(vers);
}

/* Describe what bytes [@bs, @be) of block @blk hold, for a report. */
static void describe_range(const __u8 *got, __u64 blk, size_t bs,
			   size_t be, __u8 *exp, __u8 *scratch, char *out,
			   size_t n)
{
	__u64 v, newest = atomic_load(&started[blk]);
	char d[200];
	size_t off;

	if (bs == 0 && be == o.bsize) {
		cor_describe(got, o.bsize, d, sizeof(d), scratch);
	} else if (bs == 0 && be >= COR_HDR_SIZE &&
		   get_le64(got) == COR_PATTERN_MAGIC) {
		snprintf(d, sizeof(d),
			 "partial block with header seed=%llu block=%llu version=%llu",
			 get_le64(got + 8), get_le64(got + 16), get_le64(got + 24));
	} else {
		cor_describe_partial(got, be - bs, d, sizeof(d));
	}
	/* which version (if any) of this block does it equal? */
	for (v = 0; v <= newest && v < 100000; v++)
		if (matches(got, blk, bs, be, v, exp)) {
			snprintf(out, n, "%s; equals version %llu of the block",
				 d, v);
			return;
		}
	for (off = bs; off < be; off += SECTOR_SIZE) {
		size_t e = off + SECTOR_SIZE < be ? off + SECTOR_SIZE : be;

		for (v = 0; v <= newest && v < 100000; v++)
			if (matches(got + (off - bs), blk, off, e, v, exp))
				break;
		if (v > newest || v >= 100000) {
			char who[160], map[400];

			identify_sector(got + (off - bs), e - off, blk, exp, who,
					sizeof(who));
			byte_map(got + (off - bs), blk, off, e, newest, map, sizeof(map));
			snprintf(out, n,
				 "%s; byte %zu of the block (sector %zu) matches no version 0..%llu (%s) [bytes: %s]",
				 d, off, off / SECTOR_SIZE, newest, who, map);
			return;
		}
	}
	snprintf(out, n, "%s; a sector-wise mix of versions 0..%llu", d, newest);
}

/* Read block @blk again and say what it holds now (transient or lasting?) */
static void reread_block(__u64 blk, __u8 *exp, __u8 *scratch,
			 char *out, size_t n)
{
	__u8 *buf = xalloc_aligned(o.bsize);
	char d[300];
	int err = full_pread(fd, buf, o.bsize, (off_t)(blk * o.bsize));

	if (err) {
		snprintf(out, n, "read failed: %s", strerror(-err));
	} else {
		describe_range(buf, blk, 0, o.bsize, exp, scratch, d, sizeof(d));
		snprintf(out, n, "%s (started %llu, completed %llu)", d,
			 (__u64)atomic_load(&started[blk]),
			 (__u64)atomic_load(&completed[blk]));
	}
	free(buf);
}

/* Find a version in [@lo, @hi] (newest first) that bytes [@bs, @be) equal. */
static bool find_version(const __u8 *got, __u64 blk, size_t bs, size_t be,
			 __u64 lo, __u64 hi, __u8 *exp)
{
	__u64 v = hi;

	for (;;) {
		if (matches(got, blk, bs, be, v, exp))
			return true;
		if (v == lo)
			return false;
		v--;
	}
}

/*
 * Does every byte of [@bs, @be) equal that byte of some version in
 * [@lo, @hi]?  Bounded to small ranges: only a racing write makes hi > lo.
 */
static bool byte_mix(const __u8 *got, __u64 blk, size_t bs, size_t be,
		     __u64 lo, __u64 hi)
{
	size_t nv = hi - lo + 1, i, j;
	__u8 *vers;
	bool ok = true;

	if (hi - lo > 16)
		return false;
	vers = xalloc_aligned(nv * o.bsize);
	for (j = 0; j < nv; j++)
		cor_fill(vers + j * o.bsize, o.bsize, o.seed, blk, lo + j);
	for (i = bs; i < be && ok; i++) {
		for (j = 0; j < nv; j++)
			if (vers[j * o.bsize + i] == got[i - bs])
				break;
		ok = j < nv;
	}
	free(vers);
	return ok;
}

/*
 * Check bytes [@bs, @be) of block @blk read as @got.  Versions in [@lo, @hi]
 * are allowed.  Returns true when acceptable.
 */
/* Room for "reader R: read of bytes OFF+LEN (sector S +N)" */
#define READ_DESC_LEN	160

/* "reader @rid: read of bytes @off+@len (sector S +N)": what a violation happened in */
static void describe_read(char *out, size_t n, unsigned int rid, __u64 off, __u64 len)
{
	snprintf(out, n, "reader %u: read of bytes %llu+%llu (sector %llu +%llu)", rid, off, len,
		 off / SECTOR_SIZE, len / SECTOR_SIZE);
}

static bool check_block(unsigned int rid, __u64 off, __u64 len,
			const __u8 *got, __u64 blk, size_t bs, size_t be,
			__u64 lo, __u64 hi, __u8 *exp, __u8 *scratch)
{
	__u64 v, cap = hi - lo > 4096 ? lo + 4096 : hi;
	char d[1500], again[512], rd[READ_DESC_LEN], want[128];
	bool sector_mix = true;
	const char *mix;
	size_t s;

	if (hi < lo) {
		violation("model error: block %llu completed %llu > started %llu", blk, lo, hi);
		return false;
	}
	/* fast path: a version whose header is in the data */
	if (bs == 0 && be >= COR_HDR_SIZE && get_le64(got) == COR_PATTERN_MAGIC) {
		v = get_le64(got + 24);
		if (v >= lo && v <= hi && matches(got, blk, bs, be, v, exp))
			return true;
	}
	if (find_version(got, blk, bs, be, lo, cap, exp))
		return true;
	/* every sector from some allowed version: a read racing a write */
	for (s = bs; s < be && sector_mix; s += SECTOR_SIZE) {
		size_t e = s + SECTOR_SIZE < be ? s + SECTOR_SIZE : be;

		sector_mix = find_version(got + (s - bs), blk, s, e, lo, cap, exp);
	}
	if (hi > lo && !o.strict_torn &&
	    (sector_mix || byte_mix(got, blk, bs, be, lo, cap))) {
		atomic_fetch_add(&n_torn, 1);
		return true;
	}
	describe_range(got, blk, bs, be, exp, scratch, d, sizeof(d));
	reread_block(blk, exp, scratch, again, sizeof(again));
	describe_read(rd, sizeof(rd), rid, off, len);
	snprintf(want, sizeof(want), "version %llu..%llu (0 = origin pattern, seed %llu)", lo, hi,
		 o.seed);
	mix = sector_mix ?
	      " (a sector-wise mix of allowed versions, refused by --strict-torn)" : "";
	violation("%s: block %llu bytes %zu..%zu must be %s, found %s%s; re-read now: %s", rd, blk,
		  bs, be - 1, want, d, mix, again);
	return false;
}

/* ------------------------------------------------------------- readers */

struct rctx {
	unsigned int id;
	__u64 rng;
};

static void *reader_thread(void *arg)
{
	struct rctx *r = arg;
	size_t maxbytes = ((size_t)o.max_io_blocks + 1) * o.bsize;
	__u8 *buf = xalloc_aligned(maxbytes);
	__u8 *exp = xalloc_aligned(o.bsize);
	__u8 *scratch = xalloc_aligned(o.bsize);
	__u64 *lo = calloc(o.max_io_blocks + 2, sizeof(*lo));
	__u64 spb = o.bsize / SECTOR_SIZE;
	__u64 total_sectors = o.nblocks * spb;

	if (!lo)
		die("out of memory");
	while (!atomic_load(&stop)) {
		__u64 off, len, first, last, b;
		int err;

		if (rnd(&r->rng) & 1) {
			__u64 blk = pick_block(&r->rng);
			__u64 n = 1 + rnd(&r->rng) % o.max_io_blocks;

			if (blk + n > o.nblocks)
				n = o.nblocks - blk;
			off = blk * o.bsize;
			len = n * o.bsize;
		} else {
			__u64 s = pick_block(&r->rng) * spb + rnd(&r->rng) % spb;
			__u64 n = 1 + rnd(&r->rng) % (o.max_io_blocks * spb);

			if (s + n > total_sectors)
				n = total_sectors - s;
			off = s * SECTOR_SIZE;
			len = n * SECTOR_SIZE;
		}
		first = off / o.bsize;
		last = (off + len - 1) / o.bsize;
		for (b = first; b <= last; b++)
			lo[b - first] = atomic_load(&completed[b]);
		err = full_pread(fd, buf, len, (off_t)off);
		if (err) {
			char rd[READ_DESC_LEN];

			describe_read(rd, sizeof(rd), r->id, off, len);
			violation("%s failed: %s", rd, strerror(-err));
			break;
		}
		for (b = first; b <= last; b++) {
			__u64 hi = atomic_load(&started[b]);
			__u64 bstart = b * o.bsize;
			size_t bs = off > bstart ? off - bstart : 0;
			size_t be = off + len < bstart + o.bsize ?
				    off + len - bstart : o.bsize;
			const __u8 *got = buf + (bstart + bs - off);

			if (!check_block(r->id, off, len, got, b, bs, be,
					 lo[b - first], hi, exp, scratch))
				goto out;
			atomic_fetch_add(&n_checked_blocks, 1);
		}
		atomic_fetch_add(&n_reads, 1);
		atomic_fetch_add(&n_read_bytes, len);
	}
out:
	free(lo);
	free(scratch);
	free(exp);
	free(buf);
	return NULL;
}

/* ------------------------------------------------------------- model I/O */

static void alloc_model(void)
{
	started = calloc(o.nblocks, sizeof(*started));
	completed = calloc(o.nblocks, sizeof(*completed));
	if (!started || !completed)
		die("out of memory for %llu blocks", o.nblocks);
}

/* Take the geometry of a model and allocate it */
static void model_geometry(__u64 blocks, __u64 seed, __u64 bs)
{
	o.nblocks = blocks;
	o.seed = seed;
	o.bsize = bs;
	alloc_model();
}

/* At the first block line of model @path: its header, checked against the options */
static void model_header(const char *path, __u64 blocks, __u64 seed, __u64 bs)
{
	if (!blocks || !bs)
		die("model %s: block lines before header", path);
	if ((o.have_blocks && o.nblocks != blocks) ||
	    (o.have_seed && o.seed != seed) ||
	    (o.bsize != bs && o.bsize != COR_DEFAULT_BSIZE))
		die("model %s does not match --blocks/--origin-seed/--block-size", path);
	model_geometry(blocks, seed, bs);
}

static void load_model(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[256], key[64];
	__u64 a, b, seed = 0, blocks = 0, bs = 0;
	bool have_end = false, alloced = false;

	if (!f)
		die("cannot open model %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (!strncmp(line, "end", 3)) {
			have_end = true;
			break;
		}
		if (sscanf(line, "%63s %llu", key, &a) == 2 &&
		    !strcmp(key, "seed")) {
			seed = a;
		} else if (sscanf(line, "%63s %llu", key, &a) == 2 &&
			   !strcmp(key, "block_size")) {
			bs = a;
		} else if (sscanf(line, "%63s %llu", key, &a) == 2 &&
			   !strcmp(key, "blocks")) {
			blocks = a;
		} else if (sscanf(line, "%llu %llu", &a, &b) == 2) {
			if (!alloced) {
				model_header(path, blocks, seed, bs);
				alloced = true;
			}
			if (a >= o.nblocks)
				die("model %s: block %llu out of range", path, a);
			atomic_store(&started[a], b);
			atomic_store(&completed[a], b);
		} else {
			die("model %s: cannot parse line: %s", path, line);
		}
	}
	fclose(f);
	if (!have_end)
		die("model %s is truncated (no 'end' line)", path);
	if (!alloced) {
		if (!blocks || !bs)
			die("model %s has no header", path);
		model_geometry(blocks, seed, bs);
	}
	o.have_blocks = true;
	o.have_seed = true;
}

static int save_model(const char *path)
{
	FILE *f = fopen(path, "w");
	__u64 b, n = 0;

	if (!f) {
		fprintf(stderr, "cor-race: cannot write model %s: %s\n", path,
			strerror(errno));
		return 1;
	}
	fprintf(f, "# cor-race model v1: <block> <version> for written blocks\n");
	fprintf(f, "seed %llu\nblock_size %zu\nblocks %llu\n",
		o.seed, o.bsize, o.nblocks);
	for (b = 0; b < o.nblocks; b++) {
		__u64 v = atomic_load(&completed[b]);

		if (v) {
			fprintf(f, "%llu %llu\n", b, v);
			n++;
		}
	}
	fprintf(f, "end\n");
	if (fclose(f)) {
		fprintf(stderr, "cor-race: writing model %s: %s\n", path,
			strerror(errno));
		return 1;
	}
	printf("cor-race: model with %llu written blocks saved to %s\n",
	       n, path);
	return 0;
}

/* Compare every block with the model exactly.  Returns mismatches. */
static __u64 final_verify(void)
{
	const __u64 per = 256;
	__u8 *buf = xalloc_aligned(per * o.bsize);
	__u8 *exp = xalloc_aligned(o.bsize);
	__u8 *scratch = xalloc_aligned(o.bsize);
	__u64 b, i, bad = 0;
	char d[512];

	for (b = 0; b < o.nblocks; b += per) {
		__u64 n = o.nblocks - b < per ? o.nblocks - b : per;
		int err = full_pread(fd, buf, n * o.bsize, (off_t)(b * o.bsize));

		if (err) {
			fprintf(stderr,
				"cor-race: VIOLATION: final verify read of blocks %llu..%llu failed: %s\n",
				b, b + n - 1, strerror(-err));
			return bad + n;
		}
		for (i = 0; i < n; i++) {
			__u64 v = atomic_load(&completed[b + i]);
			const __u8 *got = buf + i * o.bsize;

			if (atomic_load(&started[b + i]) != v) {
				fprintf(stderr,
					"cor-race: model error: block %llu write in flight at final verify\n",
					b + i);
				bad++;
				continue;
			}
			if (matches(got, b + i, 0, o.bsize, v, exp))
				continue;
			if (bad++ < 10) {
				describe_range(got, b + i, 0, o.bsize, exp, scratch, d,
					       sizeof(d));
				fprintf(stderr,
					"cor-race: VIOLATION: final verify: block %llu must be version %llu%s, found %s\n",
					b + i, v, v ? "" : " (origin pattern)", d);
			}
		}
	}
	free(scratch);
	free(exp);
	free(buf);
	if (bad)
		fprintf(stderr,
			"cor-race: VIOLATION: final verify: %llu of %llu blocks differ from the model\n",
			bad, o.nblocks);
	else
		printf("cor-race: final verify: %llu blocks match the model\n",
		       o.nblocks);
	return bad;
}

/* ------------------------------------------------------------- main */

static void on_alarm(int sig)
{
	static const char msg[] =
		"cor-race: TIMEOUT: I/O did not complete in time (hung device?)\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(3);
}

static void show_usage(int code)
{
	fprintf(code ? stderr : stdout,
		"usage: cor-race [run] DEV --blocks N --origin-seed S [--threads T]\n"
		"         [--readers R] [--writers W] [--seconds X] [--block-size B]\n"
		"         [--max-io-blocks K] [--stripe S] [--window W] [--flush-every K]\n"
		"         [--rng-seed R] [--model-in FILE] [--model-out FILE]\n"
		"         [--strict-torn] [--buffered] [--grace G] [--no-final-verify]\n"
		"       cor-race verify DEV --model FILE [--buffered]\n"
		"Exit: 0 ok, 1 violation or I/O error, 2 usage error, 3 hang.\n");
	exit(code);
}

int main(int argc, char **argv)
{
	bool verify_only = false, direct;
	const char *pos[4];
	int npos = 0, i;
	bool threads_set = false, rw_set = false;
	unsigned int threads = 4;
	pthread_t *tids;
	struct wctx *wc;
	struct rctx *rc;
	__u64 bad = 0, dev_bytes;
	int ret = 0;

	prog_name = "cor-race";
	o.rng_seed = (__u64)time(NULL) ^ ((__u64)getpid() << 32);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

#define OPT(name) (!strcmp(a, name) && v && (++i, 1))
		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			show_usage(0);
		else if (!strcmp(a, "--strict-torn"))
			o.strict_torn = true;
		else if (!strcmp(a, "--buffered"))
			o.buffered = true;
		else if (!strcmp(a, "--no-final-verify"))
			o.no_final_verify = true;
		else if (OPT("--blocks"))
			o.nblocks = parse_u64(v, "--blocks"), o.have_blocks = true;
		else if (OPT("--origin-seed"))
			o.seed = parse_u64(v, "--origin-seed"), o.have_seed = true;
		else if (OPT("--threads"))
			threads = (unsigned int)parse_u64(v, "--threads"), threads_set = true;
		else if (OPT("--readers"))
			o.readers = (unsigned int)parse_u64(v, "--readers"), rw_set = true;
		else if (OPT("--writers"))
			o.writers = (unsigned int)parse_u64(v, "--writers"), rw_set = true;
		else if (OPT("--seconds"))
			o.seconds = (double)parse_u64(v, "--seconds");
		else if (OPT("--block-size"))
			o.bsize = parse_bsize(v);
		else if (OPT("--max-io-blocks"))
			o.max_io_blocks = (unsigned int)parse_u64(v, "--max-io-blocks");
		else if (OPT("--stripe"))
			o.stripe = (unsigned int)parse_u64(v, "--stripe");
		else if (OPT("--window"))
			o.window = parse_u64(v, "--window");
		else if (OPT("--flush-every"))
			o.flush_every = (unsigned int)parse_u64(v, "--flush-every");
		else if (OPT("--rng-seed"))
			o.rng_seed = parse_u64(v, "--rng-seed");
		else if (OPT("--model-in"))
			o.model_in = v;
		else if (OPT("--model-out"))
			o.model_out = v;
		else if (OPT("--model"))
			o.model = v;
		else if (OPT("--grace"))
			o.grace = (unsigned int)parse_u64(v, "--grace");
		else if (a[0] == '-')
			show_usage(2);
		else if (npos < 4)
			pos[npos++] = a;
		else
			show_usage(2);
#undef OPT
	}
	if (npos == 2 && !strcmp(pos[0], "verify")) {
		verify_only = true;
		o.dev = pos[1];
	} else if (npos == 2 && !strcmp(pos[0], "run")) {
		o.dev = pos[1];
	} else if (npos == 1) {
		o.dev = pos[0];
	} else {
		show_usage(2);
	}
	if (threads_set && !rw_set) {
		o.writers = threads / 2;
		o.readers = threads - o.writers;
	}
	if (verify_only) {
		if (!o.model)
			die("verify needs --model FILE");
		load_model(o.model);
	} else {
		if (o.model_in)
			load_model(o.model_in);
		if (!o.have_blocks || !o.nblocks)
			die("--blocks N (> 0) is required");
		if (!o.have_seed)
			die("--origin-seed S is required");
		if (!o.max_io_blocks || !o.stripe)
			die("--max-io-blocks and --stripe must be > 0");
		if (!o.readers && !o.writers)
			die("no threads");
		if (!o.seconds)
			die("--seconds must be > 0");
		if (!started)
			alloc_model();
	}

	fd = open_dev(o.dev, verify_only || !o.writers ? O_RDONLY : O_RDWR,
		      o.buffered, &direct);
	dev_bytes = dev_size_bytes(fd);
	if (dev_bytes < o.nblocks * o.bsize)
		die("%s has %llu bytes, fewer than %llu blocks of %zu",
		    o.dev, dev_bytes, o.nblocks, o.bsize);
	signal(SIGALRM, on_alarm);
	alarm((unsigned int)o.seconds + o.grace);
	clock_gettime(CLOCK_MONOTONIC, &t_start);

	if (verify_only) {
		bad = final_verify();
		return bad ? 1 : 0;
	}

	printf("cor-race: %s blocks %llu x %zu seed %llu ", o.dev, o.nblocks, o.bsize, o.seed);
	printf("readers %u writers %u seconds %.0f rng-seed %llu%s\n", o.readers, o.writers,
	       o.seconds, o.rng_seed, direct ? "" : " (buffered)");
	fflush(stdout);
	tids = calloc(o.readers + o.writers, sizeof(*tids));
	wc = calloc(o.writers + 1, sizeof(*wc));
	rc = calloc(o.readers + 1, sizeof(*rc));
	if (!tids || !wc || !rc)
		die("out of memory");
	for (unsigned int t = 0; t < o.writers; t++) {
		wc[t].id = t;
		wc[t].rng = o.rng_seed ^ (0x1000 + t) * 0x9E3779B97F4A7C15ULL;
		if (pthread_create(&tids[t], NULL, writer_thread, &wc[t]))
			die("pthread_create failed");
	}
	for (unsigned int t = 0; t < o.readers; t++) {
		rc[t].id = t;
		rc[t].rng = o.rng_seed ^ (0x2000 + t) * 0x9E3779B97F4A7C15ULL;
		if (pthread_create(&tids[o.writers + t], NULL, reader_thread, &rc[t]))
			die("pthread_create failed");
	}
	while (!atomic_load(&stop) && elapsed() < o.seconds) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	atomic_store(&stop, true);
	for (unsigned int t = 0; t < o.readers + o.writers; t++)
		pthread_join(tids[t], NULL);

	printf("cor-race: reads %llu (%llu KiB, %llu block checks) writes %llu (%llu blocks) ",
	       (unsigned long long)n_reads, (unsigned long long)n_read_bytes / 1024,
	       (unsigned long long)n_checked_blocks, (unsigned long long)n_writes,
	       (unsigned long long)n_write_blocks);
	printf("flushes %llu torn-tolerated %llu in %.1fs\n", (unsigned long long)n_flushes,
	       (unsigned long long)n_torn, elapsed());
	if (atomic_load(&violations))
		ret = 1;
	if (!ret && !o.no_final_verify) {
		if (o.writers && fsync(fd)) {
			fprintf(stderr, "cor-race: VIOLATION: fsync failed: %s\n",
				strerror(errno));
			ret = 1;
		}
		bad = final_verify();
		if (bad)
			ret = 1;
	}
	if (o.model_out && save_model(o.model_out))
		ret = ret ? ret : 1;
	close(fd);
	if (ret)
		fprintf(stderr, "cor-race: FAILED (rng-seed %llu)\n", o.rng_seed);
	else
		printf("cor-race: OK\n");
	return ret;
}
