// SPDX-License-Identifier: GPL-2.0
/*
 * cor-replay: model-checked crash-consistency replay of a dm-log-writes log
 * (dm-cor selftests)
 *
 *   cor-replay run DEV --blocks N --seed S --mark-dev NAME --model-out FILE
 *                  [workload options]
 *   cor-replay replay --log LOG --replay DEV --model FILE --meta-offset SECT
 *                  --meta-sectors N --region-sectors R [check options]
 *
 * "run" drives a mixed workload through a cor device DEV whose blocks
 * [0, N) hold the origin pattern of seed S (cor-pattern stamp ... S):
 * writer threads (each owning every W-th stripe of blocks) write pattern
 * versions 1, 2, ... (plain or O_DSYNC, i.e. FUA), discard blocks and
 * fdatasync; a reader thread reads, which hydrates cold regions.  Every
 * operation takes a ticket from one global counter before it is issued and
 * another when it returns.  After each flush and FUA write returns, a mark
 * "crm<id>" is put into the dm-log-writes log of NAME (DM_TARGET_MSG
 * ioctl) and a ticket is taken after the mark is queued.  The model file
 * lists every block written or discarded, with its tickets, and every mark.
 *
 * "replay" applies the log's entries one by one to an in-memory image of
 * the logged device and (lazily) to the replay device DEV, zeroed first,
 * and checks the state after every FLUSH and every FUA entry, a number of
 * random entries in between and the last entry, once the mark given by
 * --start-mark has been applied.  At each of these points:
 *
 *   - the metadata slice is loaded the way the kernel does (newest valid
 *     superblock, its area's bitmaps); metadata the kernel would refuse is
 *     a violation, and cor_check (--cor-check) must exit 0 on it (run when
 *     the metadata changed since its last run: same bytes, same verdict);
 *   - every block of the cor device, as the cor device would present it
 *     (the destination's block if its region is hydrated, else the origin
 *     pattern), must be allowed by the model.  Let D be the durable set: the
 *     writes that returned before a flush (or FUA write) was issued whose
 *     mark is at or before the point, and those FUA writes themselves.  Let
 *     C be the writes issued before the first ticket taken after any mark
 *     that follows the point (a write issued later cannot be in the log
 *     yet).  A block must hold its newest version in D or a newer version
 *     in C; with no version in D, the origin pattern or a version in C.
 *     Once a discard of the block may be visible, zeroes and any version
 *     in C are allowed too (discarded data is undefined).  Anything else
 *     (lost durable data, zeroes, data of another block or of no write) is
 *     a violation;
 *   - at --loads points spread evenly, the last one and the first point
 *     with a violation: "HOOK load P" must create the cor device --cor-dev
 *     on the replayed destination and metadata (the test loads it read-only
 *     over dm-snapshots, so the replay device is never written), and the
 *     blocks read from it (all of the hydrated regions, one of each of about
 *     --load-cold unhydrated ones) must equal what the replayed devices
 *     present; then "HOOK unload P".
 *
 * dm-log-writes logs a FUA write when it completes and a plain write only
 * at the next flush, so a plain write logged after a FUA write may have
 * completed first: the log order would not be the disk's.  The cor target
 * passes no FUA write down (it completes FUA writes after a commit, which
 * flushes the destination), so its log is in completion order and is
 * replayed strictly: a FUA entry in the destination is itself a violation.
 *
 * Workload options: --writes N (write and discard operations, default
 * 3000), --writers T (default 2), --stripe B (blocks, default 8),
 * --window W (blocks; 3/4 of the I/O goes to a window that sweeps the
 * device, default N/8), --max-io B (default 4), --whole-pct P (whole-stripe
 * writes, default 20), --fua-pct P (default 5), --flush-pct P (default 6),
 * --discard-pct P (default 3), --block-size B (default 4096), --rng-seed R.
 *
 * Check options: --start-mark NAME, --cor-check BIN --meta-dev PATH,
 * --hook CMD --cor-dev PATH --loads N (how many points load the device,
 * default 20) --load-cold N (default 16), --random N (default 200),
 * --rng-seed R, --max-violations N (points with violations before giving
 * up, default 3), --progress.  Test only: --inject-drop-batch K does not
 * apply the destination writes logged between the (K-1)-th and the K-th
 * durability mark after the start mark, to show that the checks fail.
 *
 * Exit: 0 ok, 1 violation, 2 usage or setup error.
 */
#include "cor-common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

/* dm-cor on-disk format (drivers/md/dm-cor-format.h) */
#define COR_MD_BLOCK		4096
#define COR_SB_MAGIC		0x314253524f434d44ULL
#define COR_SB_CSUM_XOR		0x0c0f5eedU
#define COR_BM_CSUM_XOR		0x0b17b17bU
#define COR_BM_HDR		16
#define COR_BITS_PER_BLOCK	32640

#define PAGE_BYTES		4096
#define LOG_WINDOW		(16u << 20)
#define MARK_PREFIX		"crm"

static size_t bsize = COR_DEFAULT_BSIZE;
static __u64 seed, nblocks, rng_seed;
static bool have_seed;

/* ================================================================ run */

struct brec {			/* one block written or discarded */
	__u64 stick, ctick, block, version;
	char kind;		/* 'w' or 'd' */
	bool fua;
};

struct mrec {
	__u64 id, d, s;
	char kind;		/* 'F' flush, 'S' FUA write */
};

struct wctx {
	unsigned int id;
	__u64 rng;
	struct brec *recs;
	size_t nrecs, crecs;
	unsigned long long writes, fua, discards, flushes, blocks;
};

static struct {
	const char *dev, *mark_dev, *model_out;
	__u64 writes, window;
	unsigned int writers, stripe, max_io;
	unsigned int whole_pct, fua_pct, flush_pct, discard_pct;
} ro = {
	.writes = 3000, .writers = 2, .stripe = 8, .max_io = 4,
	.whole_pct = 20, .fua_pct = 5, .flush_pct = 6, .discard_pct = 3,
};

static int wfd = -1, sfd = -1, ctl_fd = -1;
static __u64 *versions;
static atomic_ullong ticket, ops_issued, reads_done;
static atomic_bool writers_done, failed;
static pthread_mutex_t mark_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mrec *marks;
static size_t nmarks, cmarks;

static __u64 take_ticket(void)
{
	return atomic_fetch_add(&ticket, 1);
}

static void fail_run(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&mark_lock);
	fprintf(stderr, "cor-replay: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&mark_lock);
	atomic_store(&failed, true);
}

/* After a flush or FUA write returned: mark the log, record the mark. */
static void durable_mark(char kind, __u64 d)
{
	char text[64];
	__u64 id;
	int r;

	pthread_mutex_lock(&mark_lock);
	id = nmarks;
	snprintf(text, sizeof(text), MARK_PREFIX "%llu", id);
	r = dm_log_mark(ctl_fd, ro.mark_dev, text);
	if (r) {
		pthread_mutex_unlock(&mark_lock);
		fail_run("mark %s on %s failed: %s", text, ro.mark_dev, strerror(-r));
		return;
	}
	if (nmarks == cmarks) {
		cmarks = cmarks ? 2 * cmarks : 1024;
		marks = realloc(marks, cmarks * sizeof(*marks));
		if (!marks)
			die("out of memory");
	}
	marks[nmarks].id = id;
	marks[nmarks].kind = kind;
	marks[nmarks].d = d;
	marks[nmarks].s = take_ticket();
	nmarks++;
	pthread_mutex_unlock(&mark_lock);
}

static void add_rec(struct wctx *w, char kind, __u64 stick, __u64 ctick,
		    __u64 block, __u64 version, bool fua)
{
	struct brec *r;

	if (w->nrecs == w->crecs) {
		w->crecs = w->crecs ? 2 * w->crecs : 4096;
		w->recs = realloc(w->recs, w->crecs * sizeof(*w->recs));
		if (!w->recs)
			die("out of memory");
	}
	r = &w->recs[w->nrecs++];
	r->kind = kind;
	r->stick = stick;
	r->ctick = ctick;
	r->block = block;
	r->version = version;
	r->fua = fua;
}

/* The first block of an I/O: uniform, or 3/4 in the sweeping window. */
static __u64 pick_block(__u64 *st)
{
	__u64 pos, done = atomic_load(&ops_issued);

	if (!ro.window || ro.window >= nblocks || splitmix64(st) % 4 == 0)
		return splitmix64(st) % nblocks;
	if (done > ro.writes)
		done = ro.writes;
	pos = (nblocks - ro.window) * done / ro.writes;
	return pos + splitmix64(st) % ro.window;
}

static void do_write(struct wctx *w, __u8 *buf, __u64 a, __u64 n, bool fua)
{
	__u64 i, stick, ctick;
	int r;

	for (i = 0; i < n; i++) {
		versions[a + i]++;
		cor_fill(buf + i * bsize, bsize, seed, a + i, versions[a + i]);
	}
	stick = take_ticket();
	r = full_pwrite(fua ? sfd : wfd, buf, n * bsize, (off_t)(a * bsize));
	ctick = take_ticket();
	if (r) {
		fail_run("writer %u: write of blocks %llu..%llu failed: %s", w->id,
			 a, a + n - 1, strerror(-r));
		return;
	}
	for (i = 0; i < n; i++)
		add_rec(w, 'w', stick, ctick, a + i, versions[a + i], fua);
	w->writes++;
	w->blocks += n;
	if (fua) {
		w->fua++;
		durable_mark('S', stick);
	}
}

static void do_discard(struct wctx *w, __u64 a, __u64 n)
{
	__u64 range[2] = { a * bsize, n * bsize };
	__u64 i, stick, ctick;
	int r;

	stick = take_ticket();
	r = ioctl(wfd, BLKDISCARD, range) ? -errno : 0;
	ctick = take_ticket();
	if (r) {
		fail_run("writer %u: discard of blocks %llu..%llu failed: %s", w->id,
			 a, a + n - 1, strerror(-r));
		return;
	}
	for (i = 0; i < n; i++)
		add_rec(w, 'd', stick, ctick, a + i, 0, false);
	w->discards++;
}

static void do_flush(struct wctx *w)
{
	__u64 d = take_ticket();

	if (fdatasync(wfd)) {
		fail_run("writer %u: fdatasync failed: %s", w->id, strerror(errno));
		return;
	}
	w->flushes++;
	durable_mark('F', d);
}

static void *run_writer(void *arg)
{
	struct wctx *w = arg;
	__u64 nstripes = (nblocks + ro.stripe - 1) / ro.stripe;
	__u64 owned = (nstripes - w->id + ro.writers - 1) / ro.writers;
	__u8 *buf = xalloc_aligned((size_t)ro.stripe * bsize);

	while (!atomic_load(&failed)) {
		__u64 s, first, end, a, n, lim;

		if (atomic_fetch_add(&ops_issued, 1) >= ro.writes)
			break;
		s = pick_block(&w->rng) / ro.stripe;
		s = s - s % ro.writers + w->id;
		if (s >= nstripes)
			s = w->id + ro.writers * (splitmix64(&w->rng) % owned);
		first = s * ro.stripe;
		end = first + ro.stripe < nblocks ? first + ro.stripe : nblocks;
		if (splitmix64(&w->rng) % 100 < ro.discard_pct) {
			a = first + splitmix64(&w->rng) % (end - first);
			n = 1 + splitmix64(&w->rng) % (end - a);
			do_discard(w, a, n);
		} else {
			if (splitmix64(&w->rng) % 100 < ro.whole_pct) {
				a = first;
				n = end - first;
			} else {
				a = first + splitmix64(&w->rng) % (end - first);
				lim = end - a < ro.max_io ? end - a : ro.max_io;
				n = 1 + splitmix64(&w->rng) % lim;
			}
			do_write(w, buf, a, n, splitmix64(&w->rng) % 100 < ro.fua_pct);
		}
		if (splitmix64(&w->rng) % 100 < ro.flush_pct)
			do_flush(w);
	}
	free(buf);
	return NULL;
}

/* Copy-on-read traffic: reads (mostly in the window), paced by the writers. */
static void *run_reader(void *arg)
{
	__u64 *rng = arg;
	__u8 *buf = xalloc_aligned(8 * bsize);
	int fd = open(ro.dev, O_RDONLY | O_DIRECT);

	if (fd < 0) {
		fail_run("cannot open %s: %s", ro.dev, strerror(errno));
		return NULL;
	}
	while (!atomic_load(&writers_done) && !atomic_load(&failed)) {
		__u64 a = pick_block(rng), n = 1 + splitmix64(rng) % 8;
		int r;

		if (atomic_load(&reads_done) > atomic_load(&ops_issued)) {
			struct timespec ts = { 0, 2 * 1000 * 1000 };

			nanosleep(&ts, NULL);
			continue;
		}
		if (a + n > nblocks)
			n = nblocks - a;
		r = full_pread(fd, buf, n * bsize, (off_t)(a * bsize));
		if (r) {
			fail_run("reader: read of blocks %llu..%llu failed: %s", a,
				 a + n - 1, strerror(-r));
			break;
		}
		atomic_fetch_add(&reads_done, 1);
	}
	close(fd);
	free(buf);
	return NULL;
}

static int save_model(struct wctx *wc)
{
	FILE *f = fopen(ro.model_out, "w");
	unsigned int t;
	size_t i;

	if (!f) {
		fprintf(stderr, "cor-replay: cannot write %s: %s\n", ro.model_out,
			strerror(errno));
		return 1;
	}
	fprintf(f, "# cor-replay model v1\n");
	fprintf(f, "# w <issue ticket> <return ticket> <block> <version> <fua>\n");
	fprintf(f, "# d <issue ticket> <return ticket> <block>\n");
	fprintf(f, "# m <id> <F|S> <durability ticket> <ticket after the mark>\n");
	fprintf(f, "seed %llu\nblock_size %zu\nblocks %llu\n", seed, bsize,
		nblocks);
	for (t = 0; t < ro.writers; t++) {
		for (i = 0; i < wc[t].nrecs; i++) {
			struct brec *r = &wc[t].recs[i];

			if (r->kind == 'w')
				fprintf(f, "w %llu %llu %llu %llu %d\n", r->stick,
					r->ctick, r->block, r->version,
					r->fua);
			else
				fprintf(f, "d %llu %llu %llu\n", r->stick,
					r->ctick, r->block);
		}
	}
	for (i = 0; i < nmarks; i++)
		fprintf(f, "m %llu %c %llu %llu\n", marks[i].id, marks[i].kind,
			marks[i].d, marks[i].s);
	fprintf(f, "end\n");
	if (fclose(f)) {
		fprintf(stderr, "cor-replay: writing %s: %s\n", ro.model_out,
			strerror(errno));
		return 1;
	}
	return 0;
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmd_run(void)
{
	struct wctx *wc;
	pthread_t *tids, rtid;
	__u64 rrng = rng_seed ^ 0x5eed;
	unsigned long long tot[5] = { 0 };
	double t0 = now_s();
	unsigned int t;
	bool direct;
	int ret;

	if (!ro.dev || !nblocks || !have_seed || !ro.mark_dev || !ro.model_out)
		die("run needs DEV --blocks --seed --mark-dev --model-out");
	if (!ro.writers || !ro.stripe || !ro.max_io || !ro.writes)
		die("--writers, --stripe, --max-io and --writes must be > 0");
	if ((nblocks + ro.stripe - 1) / ro.stripe < ro.writers)
		die("fewer stripes than writers");
	ctl_fd = open("/dev/mapper/control", O_RDWR);
	if (ctl_fd < 0)
		die("cannot open /dev/mapper/control: %s", strerror(errno));
	wfd = open_dev(ro.dev, O_RDWR, false, &direct);
	sfd = open_dev(ro.dev, O_RDWR | O_DSYNC, false, &direct);
	if (dev_size_bytes(wfd) < nblocks * bsize)
		die("%s is smaller than %llu blocks", ro.dev, nblocks);
	versions = calloc(nblocks, sizeof(*versions));
	wc = calloc(ro.writers, sizeof(*wc));
	tids = calloc(ro.writers, sizeof(*tids));
	if (!versions || !wc || !tids)
		die("out of memory");
	if (pthread_create(&rtid, NULL, run_reader, &rrng))
		die("pthread_create failed");
	for (t = 0; t < ro.writers; t++) {
		wc[t].id = t;
		wc[t].rng = rng_seed ^ (0x1000 + t) * 0x9E3779B97F4A7C15ULL;
		if (pthread_create(&tids[t], NULL, run_writer, &wc[t]))
			die("pthread_create failed");
	}
	for (t = 0; t < ro.writers; t++)
		pthread_join(tids[t], NULL);
	atomic_store(&writers_done, true);
	pthread_join(rtid, NULL);
	for (t = 0; t < ro.writers; t++) {
		tot[0] += wc[t].writes;
		tot[1] += wc[t].blocks;
		tot[2] += wc[t].fua;
		tot[3] += wc[t].discards;
		tot[4] += wc[t].flushes;
	}
	printf("cor-replay: %llu writes (%llu blocks, %llu FUA), %llu discards, %llu flushes, ",
	       tot[0], tot[1], tot[2], tot[3], tot[4]);
	printf("%llu reads, %zu marks in %.1fs (rng-seed %llu)\n", atomic_load(&reads_done),
	       nmarks, now_s() - t0, rng_seed);
	ret = atomic_load(&failed) ? 1 : 0;
	if (save_model(wc))
		ret = 1;
	return ret;
}

/* ============================================================= replay */

struct ent {
	__u64 pos;		/* byte offset of the entry header in the log */
	__u64 sector, nr;	/* in log sectors */
	__u32 flags;
	__s32 mark;		/* model mark, or -1 */
	bool drop;		/* --inject-drop-batch */
};

struct op {
	__u64 stick, ctick, block, version;
	__u32 hpos;		/* index in its block's history */
	char kind;
	bool fua;
};

enum { TAG_ZERO = -1, TAG_FOREIGN = -2, TAG_NONE = -3 };

static struct {
	const char *log, *replay, *model, *start_mark, *cor_check, *meta_dev;
	const char *hook, *cor_dev;
	__u64 meta_off, meta_len, region_sectors;
	unsigned int loads, randoms, max_viol, load_cold;
	int inject;
	bool progress;
} rp = { .loads = 20, .randoms = 200, .max_viol = 3, .load_cold = 16, .inject = -1 };

static struct op *ops;
static size_t nops;
static struct mrec *mmarks;
static size_t nmm;
static __u32 *hist, *hist_off, *hist_len;	/* op indices by block */
static __u32 *by_ctick, *by_stick;
static __s32 *floor_pos, *floor_mark, *ceil_pos;
static __s64 *dtag;			/* what the destination block holds */
/* FUA writes to the destination logged since the last point, and in all */
static __u64 fua_dest_pending, fua_dest_writes, fua_dest_first;
static __u8 *hyd;			/* emulated hydrated bits, per region */
static __u64 nregions, region_blocks, dest_bytes;

static __u8 *image;			/* the logged device as replayed */
static __u64 image_bytes;
static __u8 *page_dirty;		/* image pages not on the replay dev */
static int replay_fd = -1, log_fd = -1;
static __u64 log_bytes;
static __u32 ss;			/* log sector size */
static __u8 *origin_img, *origin_have;
static __u8 *exp_blk, *scratch;

static struct ent *ents;
static __u64 nents, start_entry;
static __u64 *ceil_at;

static const __u8 *log_at(__u64 pos, size_t len)
{
	static __u8 *win;
	static __u64 win_off = ~0ULL, win_len;
	__u64 off;
	size_t n;
	int r;

	if (pos >= win_off && pos + len <= win_off + win_len)
		return win + (pos - win_off);
	if (!win)
		win = xalloc_aligned(LOG_WINDOW + PAGE_BYTES);
	off = pos & ~(__u64)(PAGE_BYTES - 1);
	if (pos + len > log_bytes || pos + len - off > LOG_WINDOW + PAGE_BYTES)
		die("log entry at byte %llu (+%zu) beyond the log (%llu bytes)",
		    pos, len, log_bytes);
	n = log_bytes - off < LOG_WINDOW + PAGE_BYTES ? log_bytes - off :
	    LOG_WINDOW + PAGE_BYTES;
	r = full_pread(log_fd, win, n, (off_t)off);
	if (r)
		die("read of the log at byte %llu failed: %s", off, strerror(-r));
	win_off = off;
	win_len = n;
	return win + (pos - off);
}

static int cmp_ctick(const void *a, const void *b)
{
	const struct op *x = &ops[*(const __u32 *)a], *y = &ops[*(const __u32 *)b];

	return x->ctick < y->ctick ? -1 : x->ctick > y->ctick;
}

static int cmp_stick(const void *a, const void *b)
{
	const struct op *x = &ops[*(const __u32 *)a], *y = &ops[*(const __u32 *)b];

	if (x->stick != y->stick)
		return x->stick < y->stick ? -1 : 1;
	return x->block < y->block ? -1 : x->block > y->block;
}

static void load_model(void)
{
	FILE *f = fopen(rp.model, "r");
	char line[256], kind, mk;
	unsigned long long a, b, c, d;
	size_t cops = 0, cmm = 0, i;
	__u64 bl, v;
	int fua;
	bool end = false;

	if (!f)
		die("cannot open %s: %s", rp.model, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (!strncmp(line, "end", 3)) {
			end = true;
			break;
		}
		if (sscanf(line, "seed %llu", &a) == 1) {
			seed = a;
		} else if (sscanf(line, "block_size %llu", &a) == 1) {
			bsize = a;
		} else if (sscanf(line, "blocks %llu", &a) == 1) {
			nblocks = a;
		} else if (sscanf(line, "%c %llu %llu %llu %llu %d", &kind, &a, &b, &c, &d,
				  &fua) == (line[0] == 'w' ? 6 : 4) &&
			   (line[0] == 'w' || line[0] == 'd')) {
			if (nops == cops) {
				cops = cops ? 2 * cops : 16384;
				ops = realloc(ops, cops * sizeof(*ops));
				if (!ops)
					die("out of memory");
			}
			ops[nops].kind = kind;
			ops[nops].stick = a;
			ops[nops].ctick = b;
			ops[nops].block = c;
			ops[nops].version = kind == 'w' ? d : 0;
			ops[nops].fua = kind == 'w' && fua;
			nops++;
		} else if (sscanf(line, "m %llu %c %llu %llu", &a, &mk, &b, &c) == 4) {
			if (nmm == cmm) {
				cmm = cmm ? 2 * cmm : 1024;
				mmarks = realloc(mmarks, cmm * sizeof(*mmarks));
				if (!mmarks)
					die("out of memory");
			}
			if (a != nmm)
				die("model %s: mark %llu out of order", rp.model, a);
			mmarks[nmm].id = a;
			mmarks[nmm].kind = mk;
			mmarks[nmm].d = b;
			mmarks[nmm].s = c;
			nmm++;
		} else {
			die("model %s: cannot parse: %s", rp.model, line);
		}
	}
	fclose(f);
	if (!end || !nblocks || !bsize)
		die("model %s is truncated or has no header", rp.model);
	if (bsize % SECTOR_SIZE || rp.region_sectors * SECTOR_SIZE % bsize)
		die("the region size must be a multiple of the block size");

	hist_off = calloc(nblocks + 1, sizeof(*hist_off));
	hist_len = calloc(nblocks, sizeof(*hist_len));
	hist = calloc(nops + 1, sizeof(*hist));
	by_ctick = calloc(nops + 1, sizeof(*by_ctick));
	by_stick = calloc(nops + 1, sizeof(*by_stick));
	if (!hist_off || !hist_len || !hist || !by_ctick || !by_stick)
		die("out of memory");
	for (i = 0; i < nops; i++) {
		if (ops[i].block >= nblocks)
			die("model: block %llu out of range", ops[i].block);
		hist_off[ops[i].block + 1]++;
		by_ctick[i] = i;
		by_stick[i] = i;
	}
	qsort(by_ctick, nops, sizeof(*by_ctick), cmp_ctick);
	qsort(by_stick, nops, sizeof(*by_stick), cmp_stick);
	for (bl = 0; bl < nblocks; bl++)
		hist_off[bl + 1] += hist_off[bl];
	/* by issue ticket: a block's history in version order */
	for (i = 0; i < nops; i++) {
		struct op *o = &ops[by_stick[i]];

		o->hpos = hist_len[o->block];
		hist[hist_off[o->block] + hist_len[o->block]++] = by_stick[i];
	}
	for (bl = 0; bl < nblocks; bl++) {
		for (v = 1, i = 0; i < hist_len[bl]; i++) {
			struct op *o = &ops[hist[hist_off[bl] + i]];

			if (o->kind == 'w' && o->version != v++)
				die("model: block %llu: version %llu out of order",
				    bl, o->version);
		}
	}
}

static void read_log(void)
{
	const __u8 *p;
	__u64 i, pos, nr_entries;
	bool direct;

	log_fd = open_dev(rp.log, O_RDONLY, false, &direct);
	log_bytes = dev_size_bytes(log_fd);
	p = log_at(0, SECTOR_SIZE);
	if (get_le64(p) != WRITE_LOG_MAGIC || get_le64(p + 8) != WRITE_LOG_VERSION)
		die("%s is not a dm-log-writes log (magic %llx version %llu)", rp.log,
		    get_le64(p), get_le64(p + 8));
	nr_entries = get_le64(p + 16);
	ss = get_le32(p + 24);
	if (ss < SECTOR_SIZE || ss > PAGE_BYTES || (ss & (ss - 1)))
		die("log sector size %u not supported", ss);
	ents = calloc(nr_entries + 1, sizeof(*ents));
	if (!ents)
		die("out of memory for %llu entries", nr_entries);
	for (i = 0, pos = ss; i < nr_entries; i++) {
		struct ent *e = &ents[i];
		__u64 dlen;

		p = log_at(pos, ss);
		e->pos = pos;
		e->sector = get_le64(p);
		e->nr = get_le64(p + 8);
		e->flags = (__u32)get_le64(p + 16);
		dlen = get_le64(p + 24);
		e->mark = -1;
		if (e->flags & LOG_MARK_FLAG) {
			char text[128];
			size_t tl = dlen < sizeof(text) - 1 ? dlen : sizeof(text) - 1;
			unsigned long long id;
			char c;

			if (tl > ss - LOG_ENTRY_HDR)
				tl = ss - LOG_ENTRY_HDR;
			memcpy(text, p + LOG_ENTRY_HDR, tl);
			text[tl] = 0;
			if (sscanf(text, MARK_PREFIX "%llu%c", &id, &c) == 1) {
				if (id >= nmm || (mmarks[id].kind & 0x80))
					die("log mark %s is not in the model (or twice)", text);
				e->mark = (__s32)id;
				mmarks[id].kind |= 0x80;
			}
			if (rp.start_mark && !strcmp(text, rp.start_mark) && !start_entry)
				start_entry = i + 1;
		}
		pos += ss;
		if (!(e->flags & (LOG_DISCARD_FLAG | LOG_MARK_FLAG)))
			pos += e->nr * ss;
	}
	nents = nr_entries;
	for (i = 0; i < nmm; i++) {
		if (!(mmarks[i].kind & 0x80))
			die("model mark %s%llu is not in the log (log full or cut short?)",
			    MARK_PREFIX, i);
		mmarks[i].kind &= 0x7f;
	}
}

/* ------------------------------------------------------------ image */

static __u64 nr_dirty_pages;

static void dirty_range(__u64 off, __u64 len)
{
	__u64 p;

	for (p = off / PAGE_BYTES; p <= (off + len - 1) / PAGE_BYTES; p++) {
		if (!page_dirty[p]) {
			page_dirty[p] = 1;
			nr_dirty_pages++;
		}
	}
}

/* Write the dirty image pages in [off, off + len) to the replay device. */
static void sync_replay(__u64 off, __u64 len)
{
	__u64 p = off / PAGE_BYTES, end = (off + len + PAGE_BYTES - 1) / PAGE_BYTES;
	__u64 q;
	int r;

	while (p < end) {
		if (!page_dirty[p]) {
			p++;
			continue;
		}
		for (q = p; q < end && page_dirty[q]; q++)
			page_dirty[q] = 0;
		nr_dirty_pages -= q - p;
		r = full_pwrite(replay_fd, image + p * PAGE_BYTES, (q - p) * PAGE_BYTES,
				(off_t)(p * PAGE_BYTES));
		if (r)
			die("write to %s failed: %s", rp.replay, strerror(-r));
		p = q;
	}
}

static __s64 classify(const __u8 *buf, __u64 b)
{
	__u64 v;

	if (all_zero(buf, bsize))
		return TAG_ZERO;
	if (get_le64(buf) != COR_PATTERN_MAGIC || get_le64(buf + 8) != seed ||
	    get_le64(buf + 16) != b)
		return TAG_FOREIGN;
	v = get_le64(buf + 24);
	cor_fill(exp_blk, bsize, seed, b, v);
	if (memcmp(exp_blk, buf, bsize) || v >> 62)
		return TAG_FOREIGN;
	return (__s64)v;
}

static const __u8 *origin_block(__u64 b)
{
	if (!origin_have[b]) {
		cor_fill(origin_img + b * bsize, bsize, seed, b, 0);
		origin_have[b] = 1;
	}
	return origin_img + b * bsize;
}

static __u64 sb_csum(const __u8 *blk, __u32 xor)
{
	return ~crc32c(0, blk + 4, COR_MD_BLOCK - 4) ^ xor;
}

/*
 * Load the metadata image the way the kernel's constructor does; fill hyd[].
 * Returns 0, or -1 with the kernel's reason for refusing it in @why.
 */
static int emu_meta(char *why, size_t n)
{
	const __u8 *m = image + rp.meta_off, *sb = NULL, *blk;
	__u64 bitmap_blocks = (nregions + COR_BITS_PER_BLOCK - 1) / COR_BITS_PER_BLOCK;
	__u64 i, r, loc, area, nbits, w, word, dword;
	bool zero[2];
	int slot;

	memset(hyd, 0, nregions);
	for (slot = 0; slot < 2; slot++) {
		blk = m + slot * COR_MD_BLOCK;
		zero[slot] = all_zero(blk, COR_MD_BLOCK);
		if (zero[slot] || get_le64(blk + 8) != COR_SB_MAGIC ||
		    get_le32(blk) != (__u32)sb_csum(blk, COR_SB_CSUM_XOR))
			continue;
		if (!sb || get_le64(blk + 24) > get_le64(sb + 24))
			sb = blk;
	}
	if (zero[0] && zero[1])
		return 0;	/* not formatted: a load formats it, all unhydrated */
	if (!sb) {
		snprintf(why, n, "Metadata device is neither zeroed nor valid dm-cor metadata");
		return -1;
	}
	if (get_le32(sb + 16) != 1 || get_le32(sb + 4) != 0 || get_le32(sb + 20) != 8 ||
	    get_le64(sb + 32) != rp.region_sectors ||
	    get_le64(sb + 40) != nblocks * bsize / SECTOR_SIZE ||
	    get_le64(sb + 48) != nregions || get_le64(sb + 56) != bitmap_blocks ||
	    get_le64(sb + 64) != 2 + 4 * bitmap_blocks || get_le32(sb + 72) > 1) {
		snprintf(why, n, "superblock generation %llu: version, flags or geometry refused",
			 get_le64(sb + 24));
		return -1;
	}
	if ((2 + 4 * bitmap_blocks) * COR_MD_BLOCK > rp.meta_len) {
		snprintf(why, n, "metadata slice too small");
		return -1;
	}
	area = get_le32(sb + 72);
	for (i = 0; i < bitmap_blocks; i++) {
		const __u8 *hb, *db;

		nbits = nregions - i * COR_BITS_PER_BLOCK;
		if (nbits > COR_BITS_PER_BLOCK)
			nbits = COR_BITS_PER_BLOCK;
		for (r = 0; r < 2; r++) {
			loc = 2 + (area * 2 + r) * bitmap_blocks + i;
			blk = m + loc * COR_MD_BLOCK;
			if (get_le32(blk) != (__u32)sb_csum(blk, COR_BM_CSUM_XOR) ||
			    get_le32(blk + 4) != r || get_le64(blk + 8) != loc) {
				snprintf(why, n, "bitmap block %llu (area %llu) corrupt",
					 loc, area);
				return -1;
			}
			for (w = nbits; w % 8; w++)
				if (blk[COR_BM_HDR + w / 8] & (1u << (w % 8)))
					break;
			if (w % 8 || !all_zero(blk + COR_BM_HDR + w / 8,
					       (COR_BITS_PER_BLOCK - w) / 8)) {
				snprintf(why, n, "bitmap block %llu: bits past the end", loc);
				return -1;
			}
		}
		hb = m + (2 + (area * 2) * bitmap_blocks + i) * COR_MD_BLOCK + COR_BM_HDR;
		db = m + (2 + (area * 2 + 1) * bitmap_blocks + i) * COR_MD_BLOCK + COR_BM_HDR;
		for (w = 0; w < nbits; w += 64) {
			word = get_le64(hb + w / 8);
			dword = get_le64(db + w / 8);
			if (dword & ~word) {
				r = i * COR_BITS_PER_BLOCK + w + __builtin_ctzll(dword & ~word);
				snprintf(why, n, "region %llu dirty but not hydrated", r);
				return -1;
			}
			for (r = 0; r < 64 && w + r < nbits; r++)
				hyd[i * COR_BITS_PER_BLOCK + w + r] = (word >> r) & 1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ checks */

struct point {
	__u64 no, entry;
	const char *why;
	__s32 last_mark;
};

static unsigned long long nviolations, viol_points, cor_check_runs, loads_done;
static double t_load, t_hook, t_cor_check, t_view;

static const char *op_name(const struct op *o)
{
	if (o->kind == 'd')
		return "discard";
	return o->fua ? "FUA write" : "write";
}

static void tag_str(__s64 t, char *out, size_t n)
{
	if (t == TAG_ZERO)
		snprintf(out, n, "zeroes");
	else if (t == TAG_FOREIGN)
		snprintf(out, n, "foreign data");
	else if (!t)
		snprintf(out, n, "the origin pattern (version 0)");
	else
		snprintf(out, n, "version %lld", (long long)t);
}

static void violation(const struct point *pt, const char *fmt, ...)
{
	va_list ap;

	if (nviolations < 20) {
		fprintf(stderr, "cor-replay: VIOLATION at point %llu ", pt->no);
		fprintf(stderr, "(after log entry %llu of %llu, %s; last mark applied %s%d): ",
			pt->entry, nents, pt->why, MARK_PREFIX, pt->last_mark);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	nviolations++;
}

/* Is tag @t allowed for block @b at this point? */
static bool block_ok(__u64 b, __s64 t, char *desc, size_t n)
{
	__s32 lo = floor_pos[b], hi = ceil_pos[b], j, first;
	bool disc = false, ok = false;
	__u64 vmin = 0, vmax = 0;

	if (hi < lo)
		hi = lo;
	first = lo < 0 ? 0 : lo;
	for (j = first; j <= hi; j++)
		disc |= ops[hist[hist_off[b] + j]].kind == 'd';
	for (j = disc ? 0 : first; j <= hi; j++) {
		const struct op *o = &ops[hist[hist_off[b] + j]];

		if (o->kind != 'w')
			continue;
		if (!vmin)
			vmin = o->version;
		vmax = o->version;
		ok |= t > 0 && (__u64)t == o->version;
	}
	if (t == 0 && (lo < 0 || disc))
		ok = true;
	if (t == TAG_ZERO && disc)
		ok = true;
	if (!ok && desc) {
		int len = snprintf(desc, n, "allowed: %s%s", lo < 0 || disc ?
				   "the origin pattern, " : "", disc ? "zeroes, " : "");

		if (vmin && len >= 0 && (size_t)len < n)
			snprintf(desc + len, n - len, "versions %llu..%llu", vmin,
				 vmax);
		else if (len >= 0 && (size_t)len < n)
			snprintf(desc + len, n - len, "no written version");
	}
	return ok;
}

static void report_block(const struct point *pt, __u64 b, __s64 t)
{
	__u64 r = b / region_blocks;
	char have[300], allow[160], fl[300] = "no durable operation";
	const __u8 *data = hyd[r] ? image + b * bsize : origin_block(b);

	block_ok(b, t, allow, sizeof(allow));
	if (t == TAG_FOREIGN)
		cor_describe(data, bsize, have, sizeof(have), scratch);
	else
		tag_str(t, have, sizeof(have));
	if (floor_pos[b] >= 0) {
		const struct op *o = &ops[hist[hist_off[b] + floor_pos[b]]];

		snprintf(fl, sizeof(fl), "durable: %s of version %llu (ticket %llu-%llu) mark %s%d",
			 op_name(o), o->version, o->stick, o->ctick, MARK_PREFIX, floor_mark[b]);
	}
	violation(pt, "block %llu (byte %llu, region %llu, %s) presents %s; %s; %s",
		  b, b * bsize, r,
		  hyd[r] ? "hydrated" : "NOT hydrated in the replayed metadata", have, allow, fl);
}

static unsigned long long check_view(const struct point *pt)
{
	unsigned long long bad = 0;
	__u64 b;

	for (b = 0; b < nblocks; b++) {
		bool h = hyd[b / region_blocks];
		__s64 t = h ? dtag[b] : 0;

		if (!hist_len[b] ? t == 0 : block_ok(b, t, NULL, 0))
			continue;
		bad++;
		report_block(pt, b, t);
	}
	return bad;
}

static int run_cor_check(const struct point *pt)
{
	char out[4096];
	int pfd[2], status;
	ssize_t len = 0, r;
	pid_t pid;

	cor_check_runs++;
	if (pipe(pfd))
		die("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		execl(rp.cor_check, rp.cor_check, "-q", rp.meta_dev, (char *)NULL);
		fprintf(stderr, "cannot run %s: %s\n", rp.cor_check, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	while ((r = read(pfd[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += r;
	close(pfd[0]);
	out[len] = 0;
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid: %s", strerror(errno));
	if (WIFEXITED(status) && !WEXITSTATUS(status))
		return 0;
	violation(pt, "cor_check %s exited %d: %s", rp.meta_dev,
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
	return 1;
}

static int run_hook(const char *what, __u64 no)
{
	char cmd[4096];
	int r;

	fflush(stdout);
	fflush(stderr);
	snprintf(cmd, sizeof(cmd), "%s %s %llu", rp.hook, what, no);
	r = system(cmd);
	return r == 0 ? 0 : (WIFEXITED(r) ? WEXITSTATUS(r) : 128);
}

/* Compare blocks [@b, @b + @n) read from the loaded cor device. */
static unsigned long long load_compare(const struct point *pt, int fd, __u64 b, __u64 n,
				       __u8 *buf)
{
	unsigned long long bad = 0;
	char got[300], exp[300];
	__u64 i, blk;
	int r;

	r = full_pread(fd, buf, n * bsize, (off_t)(b * bsize));
	if (r) {
		violation(pt, "read of blocks %llu..%llu of the loaded cor device: %s",
			  b, b + n - 1, strerror(-r));
		return 1;
	}
	for (i = 0; i < n; i++) {
		const __u8 *want;

		blk = b + i;
		want = hyd[blk / region_blocks] ? image + blk * bsize : origin_block(blk);
		if (!memcmp(buf + i * bsize, want, bsize))
			continue;
		if (bad++ < 5) {
			cor_describe(buf + i * bsize, bsize, got, sizeof(got), scratch);
			cor_describe(want, bsize, exp, sizeof(exp), scratch);
			violation(pt, "the loaded cor device reads block %llu as %s", blk, got);
			violation(pt, "... but the replayed devices present %s (%s)", exp,
				  hyd[blk / region_blocks] ? "the destination's, region hydrated" :
				  "the origin's, region not hydrated");
		}
	}
	return bad;
}

/*
 * Load the cor device on the replayed state and compare what it reads:
 * every block of every hydrated region, and one block of about
 * --load-cold unhydrated regions (a cold read copies its region, which is
 * slow; the emulated view of every block is checked at every point anyway).
 */
static unsigned long long load_check(const struct point *pt)
{
	const __u64 per = 256;
	unsigned long long bad = 0;
	__u64 r, first, n, cold = 0, rng = rng_seed ^ pt->entry;
	double t0 = now_s(), t1;
	__u8 *buf;
	int fd, rc;

	sync_replay(0, image_bytes);
	loads_done++;
	rc = run_hook("load", pt->no);
	t_hook += now_s() - t0;
	if (rc) {
		violation(pt, "the cor device does not load on the replayed state (hook: %d)", rc);
		run_hook("unload", pt->no);
		return 1;
	}
	fd = open(rp.cor_dev, O_RDONLY | O_DIRECT);
	if (fd < 0) {
		violation(pt, "cannot open %s: %s", rp.cor_dev, strerror(errno));
		run_hook("unload", pt->no);
		return 1;
	}
	buf = xalloc_aligned(per * bsize);
	for (r = 0; r < nregions; r++)
		cold += !hyd[r];
	for (r = 0; r < nregions && bad < 10; r++) {
		if (!hyd[r]) {
			if (splitmix64(&rng) % cold >= rp.load_cold)
				continue;
			first = r * region_blocks + splitmix64(&rng) % region_blocks;
			if (first < nblocks)
				bad += load_compare(pt, fd, first, 1, buf);
			continue;
		}
		/* a run of hydrated regions, read in pieces of @per blocks */
		first = r * region_blocks;
		while (r + 1 < nregions && hyd[r + 1] &&
		       (r + 2) * region_blocks - first <= per)
			r++;
		n = (r + 1) * region_blocks - first;
		if (first + n > nblocks)
			n = nblocks - first;
		bad += load_compare(pt, fd, first, n, buf);
	}
	free(buf);
	close(fd);
	t1 = now_s();
	rc = run_hook("unload", pt->no);
	t_hook += now_s() - t1;
	if (rc)
		die("hook unload failed (exit %d)", rc);
	t_load += now_s() - t0;
	return bad;
}

/* ------------------------------------------------------------ replay */

static __u64 dptr, cptr;

static void raise_floor(__u32 oi, __s32 mark)
{
	const struct op *o = &ops[oi];

	if ((__s32)o->hpos > floor_pos[o->block]) {
		floor_pos[o->block] = (__s32)o->hpos;
		floor_mark[o->block] = mark;
	}
}

static void apply_mark(__s32 id)
{
	const struct mrec *m = &mmarks[id];
	size_t lo = 0, hi = nops;

	while (dptr < nops && ops[by_ctick[dptr]].ctick < m->d)
		raise_floor(by_ctick[dptr++], id);
	if (m->kind != 'S')
		return;
	/* the FUA write itself: the ops whose issue ticket is m->d */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ops[by_stick[mid]].stick < m->d)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < nops && ops[by_stick[lo]].stick == m->d; lo++)
		raise_floor(by_stick[lo], id);
}

static void advance_ceiling(__u64 limit)
{
	while (cptr < nops && ops[by_stick[cptr]].stick < limit) {
		const struct op *o = &ops[by_stick[cptr++]];

		if ((__s32)o->hpos > ceil_pos[o->block])
			ceil_pos[o->block] = (__s32)o->hpos;
	}
}

static bool droppable(__u64 i)
{
	return !(ents[i].flags & (LOG_MARK_FLAG | LOG_DISCARD_FLAG)) && ents[i].nr &&
	       ents[i].sector * ss < dest_bytes;
}

/*
 * --inject-drop-batch K: do not apply the destination writes logged between
 * the (K-1)-th and the K-th durability mark after the start mark, i.e. the
 * data that the K-th flush or FUA write made durable.  Should that batch
 * hold no destination write (two flushes in a row), the next one that
 * does is taken.
 */
static void setup_injection(__u64 start)
{
	__u64 i, m0 = start, m = nents, dropped = 0, nr = 0;
	int k = 0;

	for (i = start; i < nents; i++) {
		if (ents[i].mark < 0) {
			nr += droppable(i);
			continue;
		}
		if (++k >= rp.inject && nr) {
			m = i;
			break;
		}
		m0 = i;
		nr = 0;
	}
	if (m == nents)
		die("no durability mark from number %d on to inject a fault at", rp.inject);
	for (i = m0; i < m; i++) {
		if (droppable(i)) {
			ents[i].drop = true;
			dropped++;
		}
	}
	printf("cor-replay: INJECTED FAULT: dropping %llu destination writes, entries %llu..%llu\n",
	       dropped, m0, m - 1);
	printf("cor-replay: (the data made durable by mark %s%d at entry %llu)\n", MARK_PREFIX,
	       ents[m].mark, m);
}

static int cmd_replay(void)
{
	unsigned long long npts = 0, nflush = 0, nfua = 0, nrand = 0, nlast = 0;
	__u64 i, start, cur, cands = 0, every, ckpts = 0, dest_writes = 0;
	__u8 *is_ckpt;
	__s32 last_mark = -1;
	bool meta_new_emu = true, meta_new_check = true, emu_ok = true, direct;
	char why[256];
	double t0 = now_s(), t1;
	__u64 rng;

	if (!rp.log || !rp.replay || !rp.model || !rp.region_sectors || !rp.meta_len)
		die("replay needs --log --replay --model --region-sectors --meta-*");
	if ((rp.cor_check && !rp.meta_dev) || (rp.hook && !rp.cor_dev))
		die("--cor-check needs --meta-dev, --hook needs --cor-dev");
	if (rp.meta_off % PAGE_BYTES)
		die("the metadata offset must be 4 KiB aligned");
	load_model();
	read_log();
	start = start_entry;
	if (rp.start_mark && !start)
		die("start mark '%s' not found in the log", rp.start_mark);

	region_blocks = rp.region_sectors * SECTOR_SIZE / bsize;
	nregions = (nblocks + region_blocks - 1) / region_blocks;
	dest_bytes = nblocks * bsize;
	replay_fd = open_dev(rp.replay, O_RDWR, false, &direct);
	image_bytes = dev_size_bytes(replay_fd);
	if (image_bytes < rp.meta_off + rp.meta_len || dest_bytes > rp.meta_off)
		die("the replay device does not hold the destination and metadata");
	image = xalloc_aligned(image_bytes);
	page_dirty = calloc(image_bytes / PAGE_BYTES + 1, 1);
	floor_pos = malloc(nblocks * sizeof(*floor_pos));
	floor_mark = malloc(nblocks * sizeof(*floor_mark));
	ceil_pos = malloc(nblocks * sizeof(*ceil_pos));
	dtag = malloc(nblocks * sizeof(*dtag));
	hyd = calloc(nregions, 1);
	origin_img = xalloc_aligned(nblocks * bsize);
	origin_have = calloc(nblocks, 1);
	ceil_at = malloc((nents + 1) * sizeof(*ceil_at));
	is_ckpt = calloc(nents + 1, 1);
	exp_blk = xalloc_aligned(bsize);
	scratch = xalloc_aligned(bsize);
	if (!page_dirty || !floor_pos || !floor_mark || !ceil_pos || !dtag || !hyd ||
	    !origin_have || !ceil_at || !is_ckpt)
		die("out of memory");
	for (i = 0; i < nblocks; i++) {
		floor_pos[i] = -1;
		floor_mark[i] = -1;
		ceil_pos[i] = -1;
		dtag[i] = TAG_ZERO;
	}
	/* what was issued before the first ticket taken after a later mark */
	for (cur = ~0ULL, i = nents; i-- > 0;) {
		ceil_at[i] = cur;
		if (ents[i].mark >= 0 && mmarks[ents[i].mark].s < cur)
			cur = mmarks[ents[i].mark].s;
	}
	/* the points: every FLUSH and FUA entry, random ones, the last */
	for (i = start; i < nents; i++) {
		if (ents[i].flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG))
			is_ckpt[i] = 1;
		else
			cands++;
	}
	rng = rng_seed ^ 0xc0ffee;
	for (i = start; i < nents && cands; i++) {
		if (!is_ckpt[i] && splitmix64(&rng) % cands < rp.randoms)
			is_ckpt[i] = 2;
	}
	if (nents > start)
		is_ckpt[nents - 1] |= 4;
	for (i = start; i < nents; i++)
		ckpts += !!is_ckpt[i];
	every = rp.loads ? (ckpts + rp.loads - 1) / rp.loads : 0;
	if (rp.inject > 0)
		setup_injection(start);
	printf("cor-replay: log %s: %llu entries (sector size %u), %zu operations, %zu marks\n",
	       rp.log, nents, ss, nops, nmm);
	printf("cor-replay: checking %llu points from entry %llu on\n", ckpts, start);
	fflush(stdout);

	for (i = 0; i < nents; i++) {
		struct ent *e = &ents[i];
		__u64 off = e->sector * ss, len = e->nr * ss, b;
		struct point pt;
		unsigned long long bad;

		if (e->mark >= 0) {
			apply_mark(e->mark);
			last_mark = e->mark;
		} else if (!(e->flags & LOG_MARK_FLAG) && len && !e->drop) {
			if (off + len > image_bytes || off + len < off)
				die("log entry %llu writes sectors %llu+%llu beyond %s",
				    i, e->sector, e->nr, rp.replay);
			if (e->flags & LOG_DISCARD_FLAG)
				memset(image + off, 0, len);
			else
				memcpy(image + off, log_at(e->pos + ss, len), len);
			dirty_range(off, len);
			if (off < dest_bytes) {
				dest_writes++;
				for (b = off / bsize; b * bsize < off + len && b < nblocks; b++)
					dtag[b] = classify(image + b * bsize, b);
				if ((e->flags & LOG_FUA_FLAG) && !fua_dest_pending++)
					fua_dest_first = i;
				fua_dest_writes += !!(e->flags & LOG_FUA_FLAG);
			}
			if (off < rp.meta_off + rp.meta_len && off + len > rp.meta_off) {
				meta_new_emu = true;
				meta_new_check = true;
			}
		}
		if (i < start || !is_ckpt[i])
			continue;

		npts++;
		pt.no = npts;
		pt.entry = i;
		pt.last_mark = last_mark;
		if (is_ckpt[i] & 1) {
			pt.why = e->flags & LOG_FLUSH_FLAG ? "FLUSH" : "FUA write";
			if (e->flags & LOG_FLUSH_FLAG)
				nflush++;
			else
				nfua++;
		} else if (is_ckpt[i] & 2) {
			pt.why = "random point";
			nrand++;
		} else {
			pt.why = "last entry";
			nlast++;
		}
		advance_ceiling(ceil_at[i]);
		bad = 0;
		if (meta_new_emu) {
			emu_ok = !emu_meta(why, sizeof(why));
			meta_new_emu = false;
		}
		if (!emu_ok) {
			violation(&pt, "the kernel would refuse the replayed metadata: %s", why);
			bad++;
		}
		if (fua_dest_pending) {
			violation(&pt, "%llu FUA writes reached the destination since %s %llu): %s",
				  fua_dest_pending, "the last point (the first at entry",
				  fua_dest_first, "the log may not be in completion order");
			fua_dest_pending = 0;
			bad++;
		}
		if (rp.cor_check && meta_new_check) {
			t1 = now_s();
			sync_replay(rp.meta_off, rp.meta_len);
			bad += run_cor_check(&pt);
			meta_new_check = false;
			t_cor_check += now_s() - t1;
		}
		t1 = now_s();
		if (emu_ok)
			bad += check_view(&pt);
		t_view += now_s() - t1;
		if (rp.hook && ((every && npts % every == 0) || (is_ckpt[i] & 4))) {
			bad += load_check(&pt);
		} else if (rp.hook && bad && !viol_points && !load_check(&pt)) {
			printf("cor-replay: point %llu: the cor device loaded on this state reads",
			       npts);
			printf(" what it was checked for above: it shows the violations too\n");
		}
		if (bad) {
			viol_points++;
			if (viol_points >= rp.max_viol)
				break;
		}
		if (rp.progress && npts % 200 == 0) {
			fprintf(stderr, "cor-replay: %llu points, entry %llu/%llu, %.1fs\n",
				npts, i, nents, now_s() - t0);
		}
	}
	printf("cor-replay: checked %llu points (%llu FLUSH, %llu FUA, %llu random, %llu last)",
	       npts, nflush, nfua, nrand, nlast);
	printf(" of %llu log entries; %llu destination writes applied\n", nents, dest_writes);
	printf("cor-replay: cor_check ran %llu times, the cor device was loaded %llu times\n",
	       cor_check_runs, loads_done);
	printf("cor-replay: %llu FUA writes reached the destination (none may)\n",
	       fua_dest_writes);
	if (fua_dest_pending) {
		/* after the last point checked: no point to report them at */
		fprintf(stderr, "cor-replay: VIOLATION after the last point: %llu FUA writes %s\n",
			fua_dest_pending, "reached the destination");
		nviolations++;
	}
	printf("cor-replay: time: %.1fs cor_check, %.1fs loads (%.1fs in the hook), %.1fs views\n",
	       t_cor_check, t_load, t_hook, t_view);
	printf("cor-replay: %llu violations at %llu points in %.1fs\n", nviolations,
	       viol_points, now_s() - t0);
	if (nviolations)
		fprintf(stderr, "cor-replay: FAILED: %llu violations (rng-seed %llu)\n",
			nviolations, rng_seed);
	return nviolations ? 1 : 0;
}

/* ================================================================ main */

static void show_usage(int code)
{
	fprintf(code ? stderr : stdout,
		"usage: cor-replay run DEV --blocks N --seed S --mark-dev NAME --model-out FILE\n"
		"         [--writes N] [--writers T] [--stripe B] [--window W] [--max-io B]\n"
		"         [--whole-pct P] [--fua-pct P] [--flush-pct P] [--discard-pct P]\n"
		"         [--block-size B] [--rng-seed R]\n"
		"       cor-replay replay --log LOG --replay DEV --model FILE\n"
		"         --meta-offset SECTOR --meta-sectors N --region-sectors R\n"
		"         [--start-mark NAME] [--cor-check BIN --meta-dev PATH]\n"
		"         [--hook CMD --cor-dev PATH] [--loads N] [--load-cold N] [--random N]\n"
		"         [--max-violations N] [--rng-seed R] [--progress]\n"
		"         [--inject-drop-batch K]   (test only: drop a flushed batch)\n"
		"Exit: 0 ok, 1 violation, 2 usage or setup error.\n");
	exit(code);
}

int main(int argc, char **argv)
{
	const char *pos[4];
	int npos = 0, i;

	prog_name = "cor-replay";
	rng_seed = (__u64)time(NULL) ^ ((__u64)getpid() << 32);
	crc32c_init();
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			show_usage(0);
		if (!strcmp(a, "--progress")) {
			rp.progress = true;
			continue;
		}
		if (a[0] != '-') {
			if (npos == 4)
				show_usage(2);
			pos[npos++] = a;
			continue;
		}
		if (!v)
			show_usage(2);
		i++;
		if (!strcmp(a, "--blocks")) {
			nblocks = parse_u64(v, a);
		} else if (!strcmp(a, "--seed")) {
			seed = parse_u64(v, a);
			have_seed = true;
		} else if (!strcmp(a, "--block-size")) {
			bsize = parse_bsize(v);
		} else if (!strcmp(a, "--rng-seed")) {
			rng_seed = parse_u64(v, a);
		} else if (!strcmp(a, "--mark-dev")) {
			ro.mark_dev = v;
		} else if (!strcmp(a, "--model-out")) {
			ro.model_out = v;
		} else if (!strcmp(a, "--writes")) {
			ro.writes = parse_u64(v, a);
		} else if (!strcmp(a, "--writers")) {
			ro.writers = parse_uint(v, a);
		} else if (!strcmp(a, "--stripe")) {
			ro.stripe = parse_uint(v, a);
		} else if (!strcmp(a, "--window")) {
			ro.window = parse_u64(v, a);
		} else if (!strcmp(a, "--max-io")) {
			ro.max_io = parse_uint(v, a);
		} else if (!strcmp(a, "--whole-pct")) {
			ro.whole_pct = parse_uint(v, a);
		} else if (!strcmp(a, "--fua-pct")) {
			ro.fua_pct = parse_uint(v, a);
		} else if (!strcmp(a, "--flush-pct")) {
			ro.flush_pct = parse_uint(v, a);
		} else if (!strcmp(a, "--discard-pct")) {
			ro.discard_pct = parse_uint(v, a);
		} else if (!strcmp(a, "--log")) {
			rp.log = v;
		} else if (!strcmp(a, "--replay")) {
			rp.replay = v;
		} else if (!strcmp(a, "--model")) {
			rp.model = v;
		} else if (!strcmp(a, "--meta-offset")) {
			rp.meta_off = parse_u64(v, a) * SECTOR_SIZE;
		} else if (!strcmp(a, "--meta-sectors")) {
			rp.meta_len = parse_u64(v, a) * SECTOR_SIZE;
		} else if (!strcmp(a, "--region-sectors")) {
			rp.region_sectors = parse_u64(v, a);
		} else if (!strcmp(a, "--start-mark")) {
			rp.start_mark = v;
		} else if (!strcmp(a, "--cor-check")) {
			rp.cor_check = v;
		} else if (!strcmp(a, "--meta-dev")) {
			rp.meta_dev = v;
		} else if (!strcmp(a, "--hook")) {
			rp.hook = v;
		} else if (!strcmp(a, "--cor-dev")) {
			rp.cor_dev = v;
		} else if (!strcmp(a, "--loads")) {
			rp.loads = parse_uint(v, a);
		} else if (!strcmp(a, "--load-cold")) {
			rp.load_cold = parse_uint(v, a);
		} else if (!strcmp(a, "--random")) {
			rp.randoms = parse_uint(v, a);
		} else if (!strcmp(a, "--max-violations")) {
			rp.max_viol = parse_uint(v, a);
		} else if (!strcmp(a, "--inject-drop-batch")) {
			rp.inject = (int)parse_uint(v, a);
		} else {
			show_usage(2);
		}
	}
	if (npos == 2 && !strcmp(pos[0], "run")) {
		ro.dev = pos[1];
		if (!ro.window)
			ro.window = nblocks / 8;
		return cmd_run();
	}
	if (npos == 1 && !strcmp(pos[0], "replay"))
		return cmd_replay();
	show_usage(2);
	return 2;
}
