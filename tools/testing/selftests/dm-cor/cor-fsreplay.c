// SPDX-License-Identifier: GPL-2.0
/*
 * cor-fsreplay: filesystem crash-consistency replay for the dm-cor
 * selftests, the method of xfstests generic/482: a real filesystem on top,
 * every write logged by dm-log-writes, the log replayed to each flush and
 * FUA point, and the filesystem's own checker run there.
 *
 *   cor-fsreplay work DIR --procs N --ops M --seed S [--mark-dev NAME]
 *                [--model-out FILE] [--event PCT:CMD]...
 *   cor-fsreplay replay --log LOG --replay DEV --hook CMD [--start-mark NAME]
 *                [--points N] [--first N] [--rng-seed R] [--marks-out FILE]
 *                [--max-failures N]
 *   cor-fsreplay verify DIR --model FILE --marks FILE
 *
 * "work" runs N processes on the mounted filesystem DIR, M operations each:
 * creating, writing, appending, overwriting, truncating, punching holes in,
 * renaming (within a directory, across directories, over another file),
 * linking and unlinking many small files, making and removing directories,
 * with fsync, fdatasync, syncfs and sync among them.  Every process owns
 * DIR/pN and names its files in the shared DIR/s with its own prefix, so
 * processes never race on a name.  Some files are made durable: written,
 * fsynced, their directory fsynced, then a mark "fsdP.K" is put into the
 * dm-log-writes log of NAME (DM_TARGET_MSG) and a line "MARK PATH SIZE
 * SEED" goes to the model.  Such a file is never touched again, so at any
 * replayed point whose prefix holds its mark it must exist with exactly its
 * content.  --event PCT:CMD runs CMD (through the shell) once PCT percent
 * of the operations are done, while the processes go on: the test suspends
 * and reloads the cor device that way.
 *
 * "replay" applies the log entries one by one to DEV (zeroed, or holding
 * what the logged device held when logging started; discards write
 * zeroes) and, after each chosen point, runs "CMD check P ENTRY FLAGS"
 * with the replay device in that state and --marks-out listing the marks
 * applied so far, one a line.  The points are the FLUSH and FUA entries
 * after --start-mark (--points N of them drawn at random with --rng-seed,
 * or all with 0; and the --first N of them) and the last entry.  It also
 * counts, from --start-mark on, the FUA writes and the plain writes logged
 * after an overlapping FUA write (see track_order()).  The hook exits 0 when the state is
 * consistent, 1 when it is not (counted; replay stops after
 * --max-failures, default 3), anything else for an error.
 *
 * "verify" checks the durable files of the model whose marks are listed
 * in the marks file under DIR.
 *
 * Exit: 0 ok, 1 inconsistency found, 2 usage or setup error.
 */
#include "cor-common.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/falloc.h>

#define MAX_EVENTS		4
#define MAX_FILES		160	/* live files per process */
#define MAX_DIRS		8	/* own subdirectories per process */
#define PATH_LEN		96
#define MAX_FILE_BYTES		(24 * 1024)
#define DURABLE_PREFIX		"fsd"

/* ================================================================ work */

static struct {
	const char *dir, *mark_dev, *model_out;
	unsigned int procs, nevents;
	__u64 ops, seed;
	unsigned int event_pct[MAX_EVENTS];
	const char *event_cmd[MAX_EVENTS];
} wo = { .procs = 4, .ops = 1000 };

static atomic_ullong *ops_done;		/* shared by the processes */
static int model_fd = -1;

struct proc {
	unsigned int id;
	__u64 rng, counter, durable;
	int ctl_fd;
	char files[MAX_FILES][PATH_LEN];
	unsigned int nfiles;
	char dirs[MAX_DIRS][PATH_LEN];
	unsigned int ndirs;
	__u8 buf[MAX_FILE_BYTES];
};

static noreturn void work_fail(struct proc *p, const char *what, const char *path)
{
	fprintf(stderr, "cor-fsreplay: process %u: %s %s: %s\n", p->id, what, path,
		strerror(errno));
	exit(1);
}

static __u64 rnd(struct proc *p, __u64 n)
{
	return n ? splitmix64(&p->rng) % n : 0;
}

/* The content of a durable file (and of any file: cheap enough) */
static void fill_content(__u8 *buf, size_t len, __u64 seed)
{
	__u64 st = seed, v = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		if (!(i % 8))
			v = splitmix64(&st);
		buf[i] = (__u8)(v >> (8 * (i % 8)));
	}
}

/* A new name in the process's own directory, a subdirectory or the shared one */
static void new_path(struct proc *p, char *out)
{
	__u64 where = rnd(p, 10);
	__u64 n = p->counter++;

	if (where < 3)
		snprintf(out, PATH_LEN, "s/p%u-%llu", p->id, n);
	else if (where < 5 && p->ndirs)
		snprintf(out, PATH_LEN, "%s/f%llu", p->dirs[rnd(p, p->ndirs)], n);
	else
		snprintf(out, PATH_LEN, "p%u/f%llu", p->id, n);
}

static void forget_file(struct proc *p, unsigned int i)
{
	p->nfiles--;
	if (i != p->nfiles)
		memcpy(p->files[i], p->files[p->nfiles], PATH_LEN);
}

static void write_all(struct proc *p, int fd, const __u8 *buf, size_t len, off_t off,
		      const char *path)
{
	if (full_pwrite(fd, buf, len, off)) {
		errno = EIO;
		work_fail(p, "write", path);
	}
}

static void op_create(struct proc *p)
{
	size_t len = rnd(p, MAX_FILE_BYTES + 1);
	char path[PATH_LEN];
	int fd;

	if (p->nfiles == MAX_FILES)
		return;
	new_path(p, path);
	fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
	if (fd < 0)
		work_fail(p, "create", path);
	fill_content(p->buf, len, splitmix64(&p->rng));
	write_all(p, fd, p->buf, len, 0, path);
	if (!rnd(p, 8) && fsync(fd))
		work_fail(p, "fsync", path);
	close(fd);
	memcpy(p->files[p->nfiles++], path, PATH_LEN);
}

/* Append, overwrite, truncate or punch a hole in a live file */
static void op_modify(struct proc *p)
{
	const char *path;
	struct stat st;
	__u64 kind = rnd(p, 4);
	size_t len;
	off_t off;
	int fd;

	if (!p->nfiles)
		return;
	path = p->files[rnd(p, p->nfiles)];
	fd = open(path, O_WRONLY);
	if (fd < 0 || fstat(fd, &st))
		work_fail(p, "open", path);
	len = 1 + rnd(p, 8192);
	fill_content(p->buf, len, splitmix64(&p->rng));
	if (kind == 0 && st.st_size < MAX_FILE_BYTES) {
		write_all(p, fd, p->buf, len, st.st_size, path);
	} else if (kind == 1) {
		off = (off_t)rnd(p, st.st_size + 1);
		write_all(p, fd, p->buf, len, off, path);
	} else if (kind == 2) {
		if (ftruncate(fd, (off_t)rnd(p, st.st_size + 1)))
			work_fail(p, "truncate", path);
	} else if (st.st_size > 8192) {
		off = (off_t)(rnd(p, st.st_size / 4096) * 4096);
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, 4096) &&
		    errno != EOPNOTSUPP)
			work_fail(p, "punch a hole in", path);
	}
	if (!rnd(p, 10) && fdatasync(fd))
		work_fail(p, "fdatasync", path);
	close(fd);
}

/* Rename to a new name, or over another live file */
static bool same_inode(const char *a, const char *b)
{
	struct stat sa, sb;

	return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void op_rename(struct proc *p)
{
	unsigned int i, j;
	char to[PATH_LEN];

	if (!p->nfiles)
		return;
	i = rnd(p, p->nfiles);
	j = rnd(p, p->nfiles);
	/* (a rename between two links of one inode does nothing) */
	if (i != j && !rnd(p, 3) && !same_inode(p->files[i], p->files[j])) {
		if (rename(p->files[i], p->files[j]))
			work_fail(p, "rename over", p->files[j]);
		/* i now has j's name; j's old inode is gone (unless linked) */
		forget_file(p, i);
		return;
	}
	new_path(p, to);
	if (rename(p->files[i], to))
		work_fail(p, "rename", p->files[i]);
	memcpy(p->files[i], to, PATH_LEN);
}

static void op_link_or_unlink(struct proc *p)
{
	unsigned int i;
	char to[PATH_LEN];

	if (!p->nfiles)
		return;
	i = rnd(p, p->nfiles);
	if (p->nfiles < MAX_FILES && !rnd(p, 4)) {
		new_path(p, to);
		if (link(p->files[i], to))
			work_fail(p, "link", p->files[i]);
		memcpy(p->files[p->nfiles++], to, PATH_LEN);
		return;
	}
	if (unlink(p->files[i]))
		work_fail(p, "unlink", p->files[i]);
	forget_file(p, i);
}

static void op_dir(struct proc *p)
{
	unsigned int i;

	if (p->ndirs < MAX_DIRS && rnd(p, 2)) {
		snprintf(p->dirs[p->ndirs], PATH_LEN, "p%u/d%llu", p->id, p->counter++);
		if (mkdir(p->dirs[p->ndirs], 0755))
			work_fail(p, "mkdir", p->dirs[p->ndirs]);
		p->ndirs++;
		return;
	}
	if (!p->ndirs)
		return;
	i = rnd(p, p->ndirs);
	if (rmdir(p->dirs[i])) {
		if (errno != ENOTEMPTY && errno != EEXIST)
			work_fail(p, "rmdir", p->dirs[i]);
		return;
	}
	p->ndirs--;
	if (i != p->ndirs)
		memcpy(p->dirs[i], p->dirs[p->ndirs], PATH_LEN);
}

static void sync_path(struct proc *p, const char *path, bool data_only)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		work_fail(p, "open", path);
	if (data_only ? fdatasync(fd) : fsync(fd))
		work_fail(p, "fsync", path);
	close(fd);
}

static void op_sync(struct proc *p)
{
	__u64 kind = rnd(p, 20);
	char dir[PATH_LEN];
	int fd;

	if (kind < 12 && p->nfiles) {
		sync_path(p, p->files[rnd(p, p->nfiles)], kind < 4);
	} else if (kind < 17) {
		snprintf(dir, sizeof(dir), "p%u", p->id);
		sync_path(p, rnd(p, 2) ? dir : "s", false);
	} else if (kind < 19) {
		fd = open(".", O_RDONLY);
		if (fd < 0 || syncfs(fd))
			work_fail(p, "syncfs", ".");
		close(fd);
	} else {
		sync();
	}
}

/* A file that must survive any crash after its mark: see the top comment */
static void op_durable(struct proc *p)
{
	size_t len = 1 + rnd(p, MAX_FILE_BYTES);
	__u64 seed = splitmix64(&p->rng);
	char path[PATH_LEN], mark[64], line[256], dir[PATH_LEN];
	int fd, r, n;

	snprintf(mark, sizeof(mark), DURABLE_PREFIX "%u.%llu", p->id, p->durable++);
	snprintf(dir, sizeof(dir), "p%u", p->id);
	snprintf(path, sizeof(path), "p%u/%s", p->id, mark);
	fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
	if (fd < 0)
		work_fail(p, "create", path);
	fill_content(p->buf, len, seed);
	write_all(p, fd, p->buf, len, 0, path);
	if (fsync(fd))
		work_fail(p, "fsync", path);
	close(fd);
	sync_path(p, dir, false);
	r = wo.mark_dev ? dm_log_mark(p->ctl_fd, wo.mark_dev, mark) : 0;
	if (r) {
		errno = -r;
		work_fail(p, "mark", mark);
	}
	n = snprintf(line, sizeof(line), "%s %s %zu %llu\n", mark, path, len, seed);
	if (model_fd >= 0 && write(model_fd, line, n) != n)
		work_fail(p, "write the model line for", path);
}

static void run_proc(unsigned int id)
{
	static struct proc p;
	__u64 i, op;
	char dir[PATH_LEN];

	p.id = id;
	p.rng = wo.seed * 1000003 + id * 65537 + 1;
	p.ctl_fd = -1;
	if (wo.mark_dev) {
		p.ctl_fd = open("/dev/mapper/control", O_RDWR);
		if (p.ctl_fd < 0)
			work_fail(&p, "open", "/dev/mapper/control");
	}
	snprintf(dir, sizeof(dir), "p%u", id);
	if (mkdir(dir, 0755) && errno != EEXIST)
		work_fail(&p, "mkdir", dir);
	for (i = 0; i < wo.ops; i++) {
		op = rnd(&p, 100);
		if (op < 28)
			op_create(&p);
		else if (op < 46)
			op_modify(&p);
		else if (op < 60)
			op_rename(&p);
		else if (op < 76)
			op_link_or_unlink(&p);
		else if (op < 80)
			op_dir(&p);
		else if (op < 94)
			op_sync(&p);
		else
			op_durable(&p);
		atomic_fetch_add(ops_done, 1);
	}
	exit(0);
}

static int cmd_work(void)
{
	__u64 total = wo.ops * wo.procs, done;
	unsigned int i, next_event = 0, alive = wo.procs;
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	int status, rc = 0;
	pid_t pid;

	if (!wo.dir || !wo.procs || !wo.ops)
		die("work needs DIR, --procs and --ops");
	if (chdir(wo.dir))
		die("cannot change to %s: %s", wo.dir, strerror(errno));
	if (mkdir("s", 0755) && errno != EEXIST)
		die("cannot make %s/s: %s", wo.dir, strerror(errno));
	if (wo.model_out) {
		model_fd = open(wo.model_out, O_CREAT | O_WRONLY | O_APPEND | O_TRUNC, 0644);
		if (model_fd < 0)
			die("cannot create %s: %s", wo.model_out, strerror(errno));
	}
	ops_done = mmap(NULL, sizeof(*ops_done), PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ops_done == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	atomic_store(ops_done, 0);
	fflush(NULL);
	for (i = 0; i < wo.procs; i++) {
		pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (!pid)
			run_proc(i);
	}
	/* Run the events as the operations pass their marks; reap the processes */
	while (alive) {
		done = atomic_load(ops_done);
		while (next_event < wo.nevents && done * 100 >= total * wo.event_pct[next_event]) {
			status = system(wo.event_cmd[next_event]);
			if (status) {
				fprintf(stderr, "cor-fsreplay: event '%s' failed (%d)\n",
					wo.event_cmd[next_event], status);
				rc = 1;
			}
			next_event++;
		}
		pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0)
			die("waitpid: %s", strerror(errno));
		if (!pid) {
			nanosleep(&ts, NULL);
			continue;
		}
		alive--;
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			rc = 1;
	}
	for (; next_event < wo.nevents; next_event++)
		if (system(wo.event_cmd[next_event]))
			rc = 1;
	printf("cor-fsreplay: %llu operations by %u processes%s\n",
	       (unsigned long long)atomic_load(ops_done), wo.procs, rc ? ", FAILED" : "");
	return rc;
}

/* ================================================================ replay */

struct ent {
	__u64 pos, sector, nr;
	__u32 flags;
};

static struct {
	const char *log, *replay, *hook, *start_mark, *marks_out;
	unsigned int points, first, max_failures;
	__u64 rng_seed;
} rp = { .max_failures = 3 };

static int log_fd = -1;
static __u32 ss;

static void log_read(void *buf, size_t len, __u64 pos)
{
	int r = full_pread(log_fd, buf, len, (off_t)pos);

	if (r)
		die("cannot read %zu bytes of %s at %llu: %s", len, rp.log, pos, strerror(-r));
}

/* The entries of the log; marks' texts into @texts (NULL for others) */
static struct ent *read_entries(__u64 *nents, char ***texts)
{
	__u8 hdr[4096];
	struct ent *ents;
	__u64 i, pos, n;
	char **t;

	log_read(hdr, SECTOR_SIZE, 0);
	if (get_le64(hdr) != WRITE_LOG_MAGIC || get_le64(hdr + 8) != WRITE_LOG_VERSION)
		die("%s is not a dm-log-writes log", rp.log);
	n = get_le64(hdr + 16);
	ss = get_le32(hdr + 24);
	if (ss < SECTOR_SIZE || ss > sizeof(hdr) || (ss & (ss - 1)))
		die("log sector size %u not supported", ss);
	ents = calloc(n + 1, sizeof(*ents));
	t = calloc(n + 1, sizeof(*t));
	if (!ents || !t)
		die("out of memory for %llu entries", n);
	for (i = 0, pos = ss; i < n; i++) {
		struct ent *e = &ents[i];

		log_read(hdr, ss, pos);
		e->pos = pos;
		e->sector = get_le64(hdr);
		e->nr = get_le64(hdr + 8);
		e->flags = (__u32)get_le64(hdr + 16);
		if (e->flags & LOG_MARK_FLAG) {
			__u64 dlen = get_le64(hdr + 24);
			size_t tl = dlen < ss - LOG_ENTRY_HDR ? dlen : ss - LOG_ENTRY_HDR;

			t[i] = strndup((char *)hdr + LOG_ENTRY_HDR, tl);
			if (!t[i])
				die("out of memory");
		}
		pos += ss;
		if (!(e->flags & (LOG_DISCARD_FLAG | LOG_MARK_FLAG)))
			pos += e->nr * ss;
	}
	*nents = n;
	*texts = t;
	return ents;
}

static void apply_entry(int fd, const struct ent *e, __u8 *buf, size_t buf_len,
			__u64 dev_bytes)
{
	__u64 off = e->sector * ss, len = e->nr * ss, done, n;
	int r;

	if ((e->flags & LOG_MARK_FLAG) || !len)
		return;
	if (off + len > dev_bytes || off + len < off)
		die("log entry at %llu writes sectors %llu+%llu beyond %s", e->pos,
		    e->sector, e->nr, rp.replay);
	for (done = 0; done < len; done += n) {
		n = len - done < buf_len ? len - done : buf_len;
		if (e->flags & LOG_DISCARD_FLAG)
			memset(buf, 0, n);
		else
			log_read(buf, n, e->pos + ss + done);
		r = full_pwrite(fd, buf, n, (off_t)(off + done));
		if (r)
			die("write to %s failed: %s", rp.replay, strerror(-r));
	}
}

/*
 * dm-log-writes logs a FUA write when it completes and a plain write (or
 * discard) only at the next flush.  So a plain write logged after a FUA
 * write to the same sectors, at most one FLUSH entry later, may have
 * completed before it, and the device then holds the FUA data while a
 * replay in log order leaves the plain write's.  Such pairs are counted:
 * a device whose replay must be exact should log none.
 */
#define MAX_FUA_RANGES		256

static struct {
	__u64 start, end, flush_no;
} fua_ranges[MAX_FUA_RANGES];
static unsigned int nr_fua_ranges;
static __u64 flushes_seen, fua_overtaken, overtaken_entry, overtaken_sector, fua_writes;

static void track_order(const struct ent *e, __u64 index)
{
	__u64 start = e->sector, end = e->sector + e->nr;
	unsigned int i, kept = 0;

	if (e->flags & LOG_FLUSH_FLAG) {
		flushes_seen++;
		/* FUA writes two flushes back can no longer be overtaken */
		for (i = 0; i < nr_fua_ranges; i++)
			if (fua_ranges[i].flush_no + 1 >= flushes_seen)
				fua_ranges[kept++] = fua_ranges[i];
		nr_fua_ranges = kept;
	}
	if ((e->flags & LOG_MARK_FLAG) || !e->nr)
		return;
	if (e->flags & LOG_FUA_FLAG) {
		fua_writes++;
		if (nr_fua_ranges < MAX_FUA_RANGES) {
			fua_ranges[nr_fua_ranges].start = start;
			fua_ranges[nr_fua_ranges].end = end;
			fua_ranges[nr_fua_ranges++].flush_no = flushes_seen;
		}
		return;
	}
	for (i = 0; i < nr_fua_ranges; i++) {
		if (start < fua_ranges[i].end && fua_ranges[i].start < end) {
			if (!fua_overtaken++) {
				overtaken_entry = index;
				overtaken_sector = fua_ranges[i].start;
			}
			return;
		}
	}
}

static int run_hook(__u64 no, __u64 entry, __u32 flags)
{
	char cmd[4096];
	int r;

	fflush(NULL);
	snprintf(cmd, sizeof(cmd), "%s check %llu %llu %s%s%s", rp.hook, no, entry,
		 flags & LOG_FLUSH_FLAG ? "F" : "", flags & LOG_FUA_FLAG ? "U" : "",
		 flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG) ? "" : "-");
	r = system(cmd);
	if (r == -1 || !WIFEXITED(r))
		die("hook '%s' did not run or was killed", cmd);
	return WEXITSTATUS(r);
}

static int cmd_replay(void)
{
	const size_t buf_len = 1 << 20;
	unsigned long long checked = 0, failures = 0, nflush = 0, nfua = 0;
	__u64 nents, i, start = 0, cands = 0, want, rng, dev_bytes;
	FILE *marks = NULL;
	char **texts;
	struct ent *ents;
	__u8 *point, *buf;
	bool direct;
	int fd, r;

	if (!rp.log || !rp.replay || !rp.hook)
		die("replay needs --log, --replay and --hook");
	log_fd = open(rp.log, O_RDONLY);
	if (log_fd < 0)
		die("cannot open %s: %s", rp.log, strerror(errno));
	ents = read_entries(&nents, &texts);
	if (rp.start_mark) {
		for (i = 0; i < nents && !start; i++)
			if (texts[i] && !strcmp(texts[i], rp.start_mark))
				start = i + 1;
		if (!start)
			die("start mark '%s' not found in the log", rp.start_mark);
	}
	if (rp.marks_out) {
		marks = fopen(rp.marks_out, "w");
		if (!marks)
			die("cannot create %s: %s", rp.marks_out, strerror(errno));
	}

	/* The points: FLUSH and FUA entries from @start on, a sample of them */
	point = calloc(nents + 1, 1);
	if (!point)
		die("out of memory");
	for (i = start; i < nents; i++)
		cands += !!(ents[i].flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG));
	want = rp.points && rp.points < cands ? rp.points : cands;
	rng = rp.rng_seed ^ 0x5eed;
	for (i = start; i < nents; i++) {
		if (!(ents[i].flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG)))
			continue;
		/* Selection sampling: exactly @want of the @cands */
		if (splitmix64(&rng) % cands < want) {
			point[i] = 1;
			want--;
		}
		cands--;
	}
	for (i = start, want = 0; i < nents && want < rp.first; i++) {
		if (ents[i].flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG)) {
			point[i] = 1;
			want++;
		}
	}
	if (nents > start)
		point[nents - 1] = 1;
	for (i = start; i < nents; i++)
		if (ents[i].flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG))
			cands++;
	for (want = 0, i = start; i < nents; i++)
		want += point[i];
	printf("cor-fsreplay: log %s: %llu entries, %llu FLUSH/FUA points from entry %llu on,",
	       rp.log, nents, cands, start);
	printf(" checking %llu (rng seed %llu)\n", want, rp.rng_seed);
	fflush(stdout);

	fd = open_dev(rp.replay, O_RDWR, false, &direct);
	dev_bytes = dev_size_bytes(fd);
	buf = xalloc_aligned(buf_len);
	for (i = 0; i < nents; i++) {
		apply_entry(fd, &ents[i], buf, buf_len, dev_bytes);
		if (i >= start)
			track_order(&ents[i], i);
		if (texts[i] && marks && fprintf(marks, "%s\n", texts[i]) < 0)
			die("cannot write %s", rp.marks_out);
		if (!point[i])
			continue;
		if (fsync(fd))
			die("fsync %s: %s", rp.replay, strerror(errno));
		if (marks && fflush(marks))
			die("cannot write %s", rp.marks_out);
		checked++;
		nflush += !!(ents[i].flags & LOG_FLUSH_FLAG);
		nfua += !!(ents[i].flags & LOG_FUA_FLAG);
		r = run_hook(checked, i, ents[i].flags);
		if (r == 1) {
			failures++;
			printf("cor-fsreplay: point %llu (entry %llu): INCONSISTENT\n", checked, i);
			if (failures >= rp.max_failures)
				break;
		} else if (r) {
			die("hook failed at point %llu (entry %llu): exit %d", checked, i, r);
		}
	}
	printf("cor-fsreplay: checked %llu points (%llu FLUSH, %llu FUA entries),",
	       checked, nflush, nfua);
	printf(" %llu inconsistent\n", failures);
	printf("cor-fsreplay: %llu FUA writes logged after the start mark\n", fua_writes);
	printf("cor-fsreplay: %llu plain writes logged after an overlapping FUA write",
	       fua_overtaken);
	if (fua_overtaken)
		printf(" (order in doubt; the first at entry %llu, %s %llu)\n", overtaken_entry,
		       "over the FUA write at sector", overtaken_sector);
	else
		printf(" (order in doubt)\n");
	return failures ? 1 : 0;
}

/* ================================================================ verify */

static struct {
	const char *dir, *model, *marks;
} vo;

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **read_lines(const char *path, size_t *n)
{
	char line[512], **v = NULL;
	size_t cap = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		die("cannot open %s: %s", path, strerror(errno));
	*n = 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (*n == cap) {
			cap = cap ? 2 * cap : 256;
			v = realloc(v, cap * sizeof(*v));
			if (!v)
				die("out of memory");
		}
		v[*n] = strdup(line);
		if (!v[(*n)++])
			die("out of memory");
	}
	fclose(f);
	return v;
}

/* Zero when the file holds exactly @len bytes of @seed's content */
static int check_file(const char *path, size_t len, __u64 seed, __u8 *want, __u8 *got)
{
	struct stat st = { 0 };
	int fd = open(path, O_RDONLY), r;

	if (fd < 0) {
		printf("cor-fsreplay: durable file %s: %s\n", path, strerror(errno));
		return 1;
	}
	r = fstat(fd, &st) ? -errno : full_pread(fd, got, len, 0);
	close(fd);
	if (r || (size_t)st.st_size != len) {
		printf("cor-fsreplay: durable file %s: size %lld, expected %zu%s%s\n", path,
		       (long long)st.st_size, len, r ? ": " : "", r ? strerror(-r) : "");
		return 1;
	}
	fill_content(want, len, seed);
	if (memcmp(want, got, len)) {
		printf("cor-fsreplay: durable file %s: content differs\n", path);
		return 1;
	}
	return 0;
}

static int cmd_verify(void)
{
	size_t nmodel, nmarks, i, len, checked = 0, bad = 0;
	char **model, **marks, mark[64], rel[PATH_LEN], *key;
	__u8 *want = malloc(MAX_FILE_BYTES + 1), *got = malloc(MAX_FILE_BYTES + 1);
	unsigned long long seed;
	char path[PATH_MAX];

	if (!vo.dir || !vo.model || !vo.marks)
		die("verify needs DIR, --model and --marks");
	if (!want || !got)
		die("out of memory");
	model = read_lines(vo.model, &nmodel);
	marks = read_lines(vo.marks, &nmarks);
	qsort(marks, nmarks, sizeof(*marks), cmp_str);
	for (i = 0; i < nmodel; i++) {
		if (sscanf(model[i], "%63s %95s %zu %llu", mark, rel, &len, &seed) != 4 ||
		    len > MAX_FILE_BYTES)
			die("%s: bad line '%s'", vo.model, model[i]);
		key = mark;
		if (!bsearch(&key, marks, nmarks, sizeof(*marks), cmp_str))
			continue;
		snprintf(path, sizeof(path), "%s/%s", vo.dir, rel);
		checked++;
		bad += check_file(path, len, seed, want, got);
	}
	printf("cor-fsreplay: %zu durable files checked, %zu wrong\n", checked, bad);
	return bad ? 1 : 0;
}

/* ================================================================ main */

static noreturn void print_usage(int code)
{
	fprintf(code ? stderr : stdout,
		"usage: cor-fsreplay work DIR --procs N --ops M --seed S [--mark-dev NAME]\n"
		"         [--model-out FILE] [--event PCT:CMD]...\n"
		"       cor-fsreplay replay --log LOG --replay DEV --hook CMD [--start-mark NAME]\n"
		"         [--points N] [--first N] [--rng-seed R] [--marks-out FILE]\n"
		"         [--max-failures N]\n"
		"       cor-fsreplay verify DIR --model FILE --marks FILE\n"
		"Exit: 0 ok, 1 inconsistency found, 2 usage or setup error.\n");
	exit(code);
}

static void parse_event(const char *v)
{
	char *colon = strchr(v, ':');
	char pct[16];

	if (!colon || colon == v || (size_t)(colon - v) >= sizeof(pct) || !colon[1])
		die("--event wants PCT:CMD, got '%s'", v);
	if (wo.nevents == MAX_EVENTS)
		die("at most %d --event options", MAX_EVENTS);
	memcpy(pct, v, colon - v);
	pct[colon - v] = 0;
	wo.event_pct[wo.nevents] = parse_uint(pct, "event percentage");
	if (wo.event_pct[wo.nevents] > 100 ||
	    (wo.nevents && wo.event_pct[wo.nevents] < wo.event_pct[wo.nevents - 1]))
		die("event percentages must be at most 100 and in order");
	wo.event_cmd[wo.nevents++] = colon + 1;
}

int main(int argc, char **argv)
{
	const char *pos[2];
	int npos = 0, i;

	prog_name = "cor-fsreplay";
	rp.rng_seed = (__u64)time(NULL) ^ ((__u64)getpid() << 32);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			print_usage(0);
		if (a[0] != '-') {
			if (npos == 2)
				print_usage(2);
			pos[npos++] = a;
			continue;
		}
		if (!v)
			print_usage(2);
		i++;
		if (!strcmp(a, "--procs"))
			wo.procs = parse_uint(v, a);
		else if (!strcmp(a, "--ops"))
			wo.ops = parse_u64(v, a);
		else if (!strcmp(a, "--seed"))
			wo.seed = parse_u64(v, a);
		else if (!strcmp(a, "--mark-dev"))
			wo.mark_dev = v;
		else if (!strcmp(a, "--model-out"))
			wo.model_out = v;
		else if (!strcmp(a, "--event"))
			parse_event(v);
		else if (!strcmp(a, "--log"))
			rp.log = v;
		else if (!strcmp(a, "--replay"))
			rp.replay = v;
		else if (!strcmp(a, "--hook"))
			rp.hook = v;
		else if (!strcmp(a, "--start-mark"))
			rp.start_mark = v;
		else if (!strcmp(a, "--points"))
			rp.points = parse_uint(v, a);
		else if (!strcmp(a, "--first"))
			rp.first = parse_uint(v, a);
		else if (!strcmp(a, "--rng-seed"))
			rp.rng_seed = parse_u64(v, a);
		else if (!strcmp(a, "--marks-out"))
			rp.marks_out = v;
		else if (!strcmp(a, "--max-failures"))
			rp.max_failures = parse_uint(v, a);
		else if (!strcmp(a, "--model"))
			vo.model = v;
		else if (!strcmp(a, "--marks"))
			vo.marks = v;
		else
			print_usage(2);
	}
	if (npos == 2 && !strcmp(pos[0], "work")) {
		wo.dir = pos[1];
		return cmd_work();
	}
	if (npos == 1 && !strcmp(pos[0], "replay"))
		return cmd_replay();
	if (npos == 2 && !strcmp(pos[0], "verify")) {
		vo.dir = pos[1];
		return cmd_verify();
	}
	print_usage(2);
}
