// SPDX-License-Identifier: GPL-2.0
/*
 * cor-pattern: stamp and verify deterministic block patterns (dm-cor selftests)
 *
 *   cor-pattern stamp    DEV START_BLOCK NR_BLOCKS SEED [options]
 *   cor-pattern verify   DEV START_BLOCK NR_BLOCKS SEED [options]
 *   cor-pattern gen      START_BLOCK NR_BLOCKS SEED [options]   (to stdout)
 *   cor-pattern describe DEV BLOCK [COUNT] [options]
 *
 * Blocks are numbered from the start of DEV in units of the block size; the
 * block number is part of the content, so data that landed at the wrong
 * offset is recognised as such.  See cor-common.h for the format.
 *
 * Options: --block-size B (default 4096), --pattern-version V (default 0),
 *          --buffered (no O_DIRECT), --max-report N (verify, default 8),
 *          --quiet.
 * Exit: 0 ok, 1 verify mismatch or I/O error, 2 usage error.
 */
#include "cor-common.h"

#define CHUNK_BYTES	(1024u * 1024u)

static size_t bsize = COR_DEFAULT_BSIZE;
static __u64 version;
static bool buffered, quiet;
static unsigned int max_report = 8;

static void show_usage(int code)
{
	fprintf(code ? stderr : stdout,
		"usage: cor-pattern stamp    DEV START_BLOCK NR_BLOCKS SEED [options]\n"
		"       cor-pattern verify   DEV START_BLOCK NR_BLOCKS SEED [options]\n"
		"       cor-pattern gen      START_BLOCK NR_BLOCKS SEED [options] > FILE\n"
		"       cor-pattern describe DEV BLOCK [COUNT] [options]\n"
		"options: --block-size B  pattern block size (default 4096)\n"
		"         --pattern-version V  pattern version (default 0 = origin stamp)\n"
		"         --buffered      do not use O_DIRECT\n"
		"         --max-report N  mismatching blocks to describe (default 8)\n"
		"         --quiet         print only errors\n"
		"NR_BLOCKS may be 'all' for stamp/verify (to the end of DEV).\n");
	exit(code);
}

static __u64 resolve_nr(const char *s, int fd, __u64 start)
{
	__u64 total;

	if (strcmp(s, "all"))
		return parse_u64(s, "block count");
	total = dev_size_bytes(fd) / bsize;
	if (start > total)
		die("start block %llu beyond end (%llu blocks)",
		    start, total);
	return total - start;
}

/* "stamped ..." or "verified ...": what was done, unless --quiet */
static void report_done(const char *what, __u64 start, __u64 nr, __u64 seed, bool direct)
{
	if (!quiet)
		printf("%s %llu blocks of %zu bytes at block %llu seed %llu version %llu%s\n",
		       what, nr, bsize, start, seed, version, direct ? "" : " (buffered)");
}

static int do_stamp(const char *dev, __u64 start, const char *nr_s,
		    __u64 seed)
{
	bool direct;
	int fd = open_dev(dev, O_WRONLY, buffered, &direct);
	__u64 nr = resolve_nr(nr_s, fd, start);
	size_t per = CHUNK_BYTES / bsize ? CHUNK_BYTES / bsize : 1;
	__u8 *buf = xalloc_aligned(per * bsize);
	__u64 b, done = 0;

	while (done < nr) {
		__u64 n = nr - done < per ? nr - done : per;
		int r;

		for (b = 0; b < n; b++)
			cor_fill(buf + b * bsize, bsize, seed, start + done + b, version);
		r = full_pwrite(fd, buf, n * bsize, (off_t)((start + done) * bsize));
		if (r) {
			fprintf(stderr,
				"cor-pattern: write of blocks %llu..%llu to %s failed: %s\n",
				start + done, start + done + n - 1, dev, strerror(-r));
			return 1;
		}
		done += n;
	}
	if (fsync(fd)) {
		fprintf(stderr, "cor-pattern: fsync %s: %s\n", dev, strerror(errno));
		return 1;
	}
	close(fd);
	report_done("stamped", start, nr, seed, direct);
	return 0;
}

static int do_verify(const char *dev, __u64 start, const char *nr_s,
		     __u64 seed)
{
	bool direct;
	int fd = open_dev(dev, O_RDONLY, buffered, &direct);
	__u64 nr = resolve_nr(nr_s, fd, start);
	size_t per = CHUNK_BYTES / bsize ? CHUNK_BYTES / bsize : 1;
	__u8 *buf = xalloc_aligned(per * bsize);
	__u8 *exp = xalloc_aligned(bsize);
	__u8 *scratch = xalloc_aligned(bsize);
	__u64 b, done = 0, bad = 0, first_bad = 0;
	char desc[256];

	while (done < nr) {
		__u64 n = nr - done < per ? nr - done : per;
		int r = full_pread(fd, buf, n * bsize, (off_t)((start + done) * bsize));

		if (r) {
			fprintf(stderr,
				"cor-pattern: read of blocks %llu..%llu from %s failed: %s\n",
				start + done, start + done + n - 1, dev, strerror(-r));
			return 1;
		}
		for (b = 0; b < n; b++) {
			__u64 blk = start + done + b;
			__u8 *got = buf + b * bsize;
			size_t off;

			cor_fill(exp, bsize, seed, blk, version);
			if (!memcmp(exp, got, bsize))
				continue;
			if (!bad)
				first_bad = blk;
			if (bad++ < max_report) {
				for (off = 0; off < bsize && exp[off] == got[off]; off++)
					;
				cor_describe(got, bsize, desc, sizeof(desc), scratch);
				fprintf(stderr,
					"cor-pattern: %s block %llu (byte %llu) mismatch at byte %zu of the block: expected seed=%llu block=%llu version=%llu, found %s\n",
					dev, blk, blk * bsize, off, seed, blk, version, desc);
			}
		}
		done += n;
	}
	close(fd);
	if (bad) {
		fprintf(stderr,
			"cor-pattern: %s: %llu of %llu blocks differ, first bad block %llu\n",
			dev, bad, nr, first_bad);
		return 1;
	}
	report_done("verified", start, nr, seed, direct);
	return 0;
}

static int do_gen(__u64 start, __u64 nr, __u64 seed)
{
	__u8 *buf = xalloc_aligned(bsize);

	for (__u64 b = 0; b < nr; b++) {
		cor_fill(buf, bsize, seed, start + b, version);
		if (fwrite(buf, bsize, 1, stdout) != 1)
			die("write to stdout failed: %s", strerror(errno));
	}
	if (fflush(stdout))
		die("write to stdout failed: %s", strerror(errno));
	return 0;
}

static int do_describe(const char *dev, __u64 blk, __u64 count)
{
	bool direct;
	int fd = open_dev(dev, O_RDONLY, buffered, &direct);
	__u8 *buf = xalloc_aligned(bsize);
	__u8 *scratch = xalloc_aligned(bsize);
	char desc[256];

	for (__u64 i = 0; i < count; i++) {
		int r = full_pread(fd, buf, bsize, (off_t)((blk + i) * bsize));

		if (r) {
			fprintf(stderr, "cor-pattern: read block %llu: %s\n",
				blk + i, strerror(-r));
			return 1;
		}
		cor_describe(buf, bsize, desc, sizeof(desc), scratch);
		printf("block %llu: %s\n", blk + i, desc);
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *pos[8];
	int npos = 0;
	const char *cmd;

	prog_name = "cor-pattern";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			show_usage(0);
		else if (!strcmp(a, "--buffered"))
			buffered = true;
		else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
			quiet = true;
		else if (!strcmp(a, "--block-size") && i + 1 < argc)
			bsize = parse_bsize(argv[++i]);
		else if (!strcmp(a, "--pattern-version") && i + 1 < argc)
			version = parse_u64(argv[++i], "version");
		else if (!strcmp(a, "--max-report") && i + 1 < argc)
			max_report = (unsigned int)parse_u64(argv[++i], "max-report");
		else if (a[0] == '-' && a[1] == '-')
			show_usage(2);
		else if (npos < 8)
			pos[npos++] = a;
		else
			show_usage(2);
	}
	if (npos < 1)
		show_usage(2);
	cmd = pos[0];
	if (!strcmp(cmd, "stamp") && npos == 5)
		return do_stamp(pos[1], parse_u64(pos[2], "start block"), pos[3],
				parse_u64(pos[4], "seed"));
	if (!strcmp(cmd, "verify") && npos == 5)
		return do_verify(pos[1], parse_u64(pos[2], "start block"), pos[3],
				 parse_u64(pos[4], "seed"));
	if (!strcmp(cmd, "gen") && npos == 4)
		return do_gen(parse_u64(pos[1], "start block"),
			      parse_u64(pos[2], "block count"),
			      parse_u64(pos[3], "seed"));
	if (!strcmp(cmd, "describe") && (npos == 3 || npos == 4))
		return do_describe(pos[1], parse_u64(pos[2], "block"),
				   npos == 4 ? parse_u64(pos[3], "count") : 1);
	show_usage(2);
}
