/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared code of the dm-cor selftest helpers (cor-pattern, cor-race).
 *
 * Pattern block format (all integers little-endian, block_size bytes):
 *
 *   offset  size  field
 *        0     8  magic    COR_PATTERN_MAGIC ("CORPAT1\0")
 *        8     8  seed     the stamp's seed
 *       16     8  block    block number (byte offset / block_size)
 *       24     8  version  0 = origin stamp, >= 1 = cor-race write number
 *       32     4  bsize    block size in bytes
 *       36     4  crc      crc32c of the whole block with this field zero
 *       40   ...  fill     splitmix64 stream seeded by (seed, block, version)
 *
 * The content is a pure function of (seed, block, version, bsize), so a
 * checker can regenerate what any block should hold and describe what a
 * wrong block holds instead.
 */
#ifndef COR_COMMON_H
#define COR_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define __SANE_USERSPACE_TYPES__	/* __u64 is unsigned long long everywhere */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/dm-ioctl.h>
#include <linux/fs.h>
#include <linux/types.h>

/* "CORPAT1\0" read as a little-endian u64 */
#define COR_PATTERN_MAGIC	0x0031544150524f43ULL
#define COR_HDR_SIZE		40
#define COR_DEFAULT_BSIZE	4096
#define SECTOR_SIZE		512

struct cor_hdr {
	__u64 magic;
	__u64 seed;
	__u64 block;
	__u64 version;
	__u32 bsize;
	__u32 crc;
};

/* ---------------------------------------------------------------- crc32c */

static __u32 crc32c_table[256];

static void crc32c_init(void)
{
	__u32 i, j, c;

	if (crc32c_table[1])
		return;
	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc32c_table[i] = c;
	}
}

static __u32 crc32c(__u32 crc, const void *buf, size_t len)
{
	const __u8 *p = buf;

	crc = ~crc;
	while (len--)
		crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ------------------------------------------------------------ generators */

static inline __u64 splitmix64(__u64 *state)
{
	__u64 z = (*state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static inline void put_le64(__u8 *p, __u64 v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (__u8)(v >> (8 * i));
}

static inline void put_le32(__u8 *p, __u32 v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (__u8)(v >> (8 * i));
}

static inline __u64 get_le64(const __u8 *p)
{
	__u64 v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline __u32 get_le32(const __u8 *p)
{
	__u32 v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Fill @buf (@bsize bytes) with the pattern of (@seed, @block, @version). */
static void cor_fill(void *buf, size_t bsize, __u64 seed, __u64 block,
		     __u64 version)
{
	__u8 *p = buf;
	__u64 st = seed ^ (block * 0xD1B54A32D192ED03ULL) ^
		      (version * 0xAEF17502108EF2D9ULL) ^ bsize;
	size_t off;
	__u32 crc;

	crc32c_init();
	put_le64(p, COR_PATTERN_MAGIC);
	put_le64(p + 8, seed);
	put_le64(p + 16, block);
	put_le64(p + 24, version);
	put_le32(p + 32, (__u32)bsize);
	put_le32(p + 36, 0);
	for (off = COR_HDR_SIZE; off + 8 <= bsize; off += 8)
		put_le64(p + off, splitmix64(&st));
	crc = crc32c(0, p, bsize);
	put_le32(p + 36, crc);
}

enum cor_parse_result {
	COR_PARSE_OK,		/* magic, crc and fill all consistent */
	COR_PARSE_BADCRC,	/* header present, crc does not match */
	COR_PARSE_BADFILL,	/* header + crc fine but fill differs (!) */
	COR_PARSE_NOMAGIC,	/* not a pattern block */
	COR_PARSE_ZERO,		/* all zeroes */
};

static bool all_zero(const void *buf, size_t len)
{
	const __u8 *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * Decode a full block.  On COR_PARSE_OK/BADCRC/BADFILL @h holds the header
 * fields.  @scratch must be a @bsize buffer.
 */
static enum cor_parse_result cor_parse(const void *buf, size_t bsize,
				       struct cor_hdr *h, void *scratch)
{
	const __u8 *p = buf;
	__u8 *s = scratch;
	__u32 crc;

	crc32c_init();
	if (all_zero(buf, bsize))
		return COR_PARSE_ZERO;
	if (get_le64(p) != COR_PATTERN_MAGIC)
		return COR_PARSE_NOMAGIC;
	h->magic = get_le64(p);
	h->seed = get_le64(p + 8);
	h->block = get_le64(p + 16);
	h->version = get_le64(p + 24);
	h->bsize = get_le32(p + 32);
	h->crc = get_le32(p + 36);
	memcpy(s, p, bsize);
	put_le32(s + 36, 0);
	crc = crc32c(0, s, bsize);
	if (crc != h->crc || h->bsize != bsize)
		return COR_PARSE_BADCRC;
	cor_fill(s, bsize, h->seed, h->block, h->version);
	if (memcmp(s, p, bsize))
		return COR_PARSE_BADFILL;
	return COR_PARSE_OK;
}

/* Human-readable description of what a block holds. */
static inline void cor_describe(const void *buf, size_t bsize, char *out,
				size_t n, void *scratch)
{
	struct cor_hdr h;
	const __u8 *p = buf;
	size_t nz = 0;

	switch (cor_parse(buf, bsize, &h, scratch)) {
	case COR_PARSE_ZERO:
		snprintf(out, n, "all zeroes");
		return;
	case COR_PARSE_OK:
		snprintf(out, n, "valid pattern seed=%llu block=%llu version=%llu", h.seed, h.block,
			 h.version);
		return;
	case COR_PARSE_BADCRC:
		snprintf(out, n,
			 "pattern header seed=%llu block=%llu version=%llu bsize=%u with BAD checksum (torn or mixed block?)",
			 h.seed, h.block, h.version, h.bsize);
		return;
	case COR_PARSE_BADFILL:
		snprintf(out, n,
			 "pattern header seed=%llu block=%llu version=%llu crc ok but fill differs",
			 h.seed, h.block, h.version);
		return;
	case COR_PARSE_NOMAGIC:
		break;
	}
	for (size_t i = 0; i < bsize; i++)
		nz += p[i] != 0;
	snprintf(out, n,
		 "unrecognised data (%zu non-zero bytes), first bytes %02x%02x%02x%02x %02x%02x%02x%02x %02x%02x%02x%02x %02x%02x%02x%02x",
		 nz, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
		 p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15]);
}

/* Describe a sub-range [@off, @off + @len) of a block that lacks a header. */
static inline void cor_describe_partial(const __u8 *got, size_t len, char *out, size_t n)
{
	if (all_zero(got, len)) {
		snprintf(out, n, "all zeroes");
		return;
	}
	snprintf(out, n, "data starting %02x%02x%02x%02x %02x%02x%02x%02x",
		 got[0], got[1], got[2], got[3], got[4], got[5], got[6], got[7]);
}

/* ------------------------------------------------------------------- I/O */

static noreturn void die(const char *fmt, ...);

static const char *prog_name = "cor-helper";

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/*
 * Open @path with O_DIRECT unless @buffered; fall back to buffered I/O (with
 * a warning) when the file system refuses O_DIRECT.  Returns the fd and sets
 * *@direct.
 */
static int open_dev(const char *path, int flags, bool buffered, bool *direct)
{
	int fd = -1;

	if (!buffered) {
		fd = open(path, flags | O_DIRECT);
		if (fd >= 0) {
			*direct = true;
			return fd;
		}
		if (errno != EINVAL)
			die("cannot open %s: %s", path, strerror(errno));
		fprintf(stderr, "%s: %s does not support O_DIRECT, using buffered I/O\n",
			prog_name, path);
	}
	fd = open(path, flags, 0644);
	if (fd < 0)
		die("cannot open %s: %s", path, strerror(errno));
	*direct = false;
	return fd;
}

static __u64 dev_size_bytes(int fd)
{
	struct stat st;
	__u64 sz;

	if (fstat(fd, &st))
		return 0;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &sz))
			return 0;
		return sz;
	}
	return (__u64)st.st_size;
}

/* Full pread/pwrite; return 0 or -errno (-EIO on a short transfer at EOF). */
static int full_pread(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done, off + done);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ENODATA;
		done += r;
	}
	return 0;
}

static int full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, (const char *)buf + done, len - done, off + done);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ENOSPC;
		done += r;
	}
	return 0;
}

static void *xalloc_aligned(size_t len)
{
	void *p;

	if (posix_memalign(&p, 4096, len ? len : 4096))
		die("out of memory (%zu bytes)", len);
	memset(p, 0, len);
	return p;
}

static __u64 parse_u64(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-')
		die("invalid %s '%s'", what, s);
	return v;
}

static inline size_t parse_bsize(const char *s)
{
	__u64 v = parse_u64(s, "block size");

	if (v < 512 || v > (1 << 20) || (v & (v - 1)))
		die("block size must be a power of two between 512 and 1048576");
	return (size_t)v;
}

static inline unsigned int parse_uint(const char *s, const char *what)
{
	__u64 v = parse_u64(s, what);

	if (v > 1000000000)
		die("%s too large", what);
	return (unsigned int)v;
}

/* ------------------------------------------------------------ dm-log-writes */

#ifndef BIT
#define BIT(n)			(1U << (n))
#endif

/* The log format (drivers/md/dm-log-writes.c), little-endian */
#define LOG_FLUSH_FLAG		BIT(0)
#define LOG_FUA_FLAG		BIT(1)
#define LOG_DISCARD_FLAG	BIT(2)
#define LOG_MARK_FLAG		BIT(3)
#define WRITE_LOG_MAGIC		0x6a736677736872ULL
#define WRITE_LOG_VERSION	1
#define LOG_ENTRY_HDR		32

/* Send "mark TEXT" to the dm-log-writes device NAME through /dev/mapper/control. */
static inline int dm_log_mark(int ctl_fd, const char *name, const char *text)
{
	__u64 buf[(sizeof(struct dm_ioctl) + sizeof(struct dm_target_msg) + 128) / 8];
	struct dm_ioctl *io = (struct dm_ioctl *)buf;
	struct dm_target_msg *tm;

	memset(buf, 0, sizeof(buf));
	io->version[0] = DM_VERSION_MAJOR;
	io->data_size = sizeof(buf);
	io->data_start = sizeof(*io);
	snprintf(io->name, sizeof(io->name), "%s", name);
	tm = (struct dm_target_msg *)((char *)buf + io->data_start);
	snprintf(tm->message, 128, "mark %s", text);
	return ioctl(ctl_fd, DM_TARGET_MSG, io) ? -errno : 0;
}

#endif /* COR_COMMON_H */
