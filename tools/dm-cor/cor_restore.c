// SPDX-License-Identifier: GPL-2.0-only
/*
 * cor_restore: write dm-cor metadata from an XML dump (cor_dump -f xml).
 *
 * The dump is read and checked whole before the output is opened.  The
 * image written has the dumped superblocks in their slots and the dumped
 * bitmaps in both areas, so every superblock points at valid bitmaps and
 * cor_dump prints the dump again, byte for byte.
 *
 * Exit status: 0 restored, 1 the dump is invalid, 2 usage or I/O error,
 * the output is too small, read-only or in use.  See man/cor_restore.8.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cor-meta.h"

#define MAX_ATTRS	16
#define MAX_NAME	32
#define MAX_VALUE	80
#define MAX_DUMP_BYTES	(16ULL << 30)

/* The little XML this tool reads: elements with attributes, no text */
enum tag_type { TAG_OPEN, TAG_CLOSE, TAG_EMPTY };

struct attr {
	char name[MAX_NAME];
	char value[MAX_VALUE];
	int used;
};

struct tag {
	enum tag_type type;
	char name[MAX_NAME];
	struct attr attrs[MAX_ATTRS];
	int nr_attrs;
	int line;
};

struct parser {
	const char *file;
	const char *p;
	int line;
};

struct range {
	__u64 first;
	__u64 count;
};

struct ranges {
	struct range *r;
	size_t nr, alloc;
	int seen;		/* the element was there */
	int has_count;
	__u64 count;		/* its count attribute */
	size_t cursor;		/* fill: first range not below the block */
};

struct dump {
	__u64 version;
	__u64 region_sectors, target_sectors, nr_regions, active_slot;
	int has_uuid, has_nr_regions, has_active_slot;
	__u8 uuid[16];
	int slot_seen[DM_COR_NR_SUPERBLOCKS];
	int used[DM_COR_NR_SUPERBLOCKS];	/* a valid superblock */
	struct cor_sb sb[DM_COR_NR_SUPERBLOCKS];
	struct ranges bits[DM_COR_NR_BITMAPS];
	struct cor_geom g;
	int newest;		/* the slot the kernel loads */
};

static void show_usage(FILE *f)
{
	fprintf(f,
		"usage: cor_restore [options] -i DUMP -o METADATA_DEV\n"
		"Write dm-cor metadata from an XML dump made by cor_dump -f xml.\n\n"
		"  -i, --input DUMP    the dump (- for standard input)\n"
		"  -o, --output DEV    the metadata device or image file; a file that\n"
		"                      does not exist is created with the size needed\n"
		"  -q, --quiet         print nothing on success\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version\n\n"
		"Exit status: 0 restored, 1 the dump is invalid, 2 usage or I/O error,\n"
		"or the output is too small, read-only or in use.\n");
}

static int parse_error(struct parser *ps, int line, const char *fmt, ...) cor_printf(3, 4);
static int parse_error(struct parser *ps, int line, const char *fmt, ...)
{
	char where[16];
	va_list ap;

	snprintf(where, sizeof(where), ":%d: ", line);
	va_start(ap, fmt);
	cor_vmsg(stderr, ps->file, where, fmt, ap);
	va_end(ap);
	return -1;
}

static void skip_space(struct parser *ps)
{
	while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') {
		if (*ps->p == '\n')
			ps->line++;
		ps->p++;
	}
}

/* Skip to just past @end; counts lines */
static int skip_past(struct parser *ps, const char *end, const char *what)
{
	int line = ps->line;
	const char *q = strstr(ps->p, end);

	if (!q)
		return parse_error(ps, line, "unterminated %s", what);
	for (; ps->p < q; ps->p++)
		if (*ps->p == '\n')
			ps->line++;
	ps->p = q + strlen(end);
	return 0;
}

static int is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static int read_name(struct parser *ps, char *buf, const char *what)
{
	size_t n = 0;

	while (is_name_char(ps->p[n]))
		n++;
	if (!n)
		return parse_error(ps, ps->line, "%s expected", what);
	if (n >= MAX_NAME)
		return parse_error(ps, ps->line, "%s too long", what);
	memcpy(buf, ps->p, n);
	buf[n] = '\0';
	ps->p += n;
	return 0;
}

/* The next tag; returns 1 at the end of the input, -1 on an error */
static int next_tag(struct parser *ps, struct tag *t)
{
	struct attr *a;
	char quote;
	size_t n;

	for (;;) {
		skip_space(ps);
		if (!*ps->p)
			return 1;
		if (*ps->p != '<')
			return parse_error(ps, ps->line, "unexpected text: an element expected");
		if (!strncmp(ps->p, "<?", 2)) {
			if (skip_past(ps, "?>", "<? ... ?>"))
				return -1;
		} else if (!strncmp(ps->p, "<!--", 4)) {
			if (skip_past(ps, "-->", "comment"))
				return -1;
		} else {
			break;
		}
	}

	memset(t, 0, sizeof(*t));
	t->line = ps->line;
	ps->p++;
	if (*ps->p == '/') {
		ps->p++;
		t->type = TAG_CLOSE;
		if (read_name(ps, t->name, "element name"))
			return -1;
		skip_space(ps);
		if (*ps->p != '>')
			return parse_error(ps, ps->line, "'>' expected after </%s", t->name);
		ps->p++;
		return 0;
	}
	if (read_name(ps, t->name, "element name"))
		return -1;
	for (;;) {
		skip_space(ps);
		if (!strncmp(ps->p, "/>", 2)) {
			ps->p += 2;
			t->type = TAG_EMPTY;
			return 0;
		}
		if (*ps->p == '>') {
			ps->p++;
			t->type = TAG_OPEN;
			return 0;
		}
		if (t->nr_attrs == MAX_ATTRS)
			return parse_error(ps, ps->line, "too many attributes in <%s>", t->name);
		a = &t->attrs[t->nr_attrs];
		if (read_name(ps, a->name, "attribute name or '>'"))
			return -1;
		for (n = 0; n < (size_t)t->nr_attrs; n++)
			if (!strcmp(t->attrs[n].name, a->name))
				return parse_error(ps, ps->line,
						   "attribute %s given twice",
						   a->name);
		skip_space(ps);
		if (*ps->p != '=')
			return parse_error(ps, ps->line, "'=' expected after %s", a->name);
		ps->p++;
		skip_space(ps);
		quote = *ps->p;
		if (quote != '"' && quote != '\'')
			return parse_error(ps, ps->line, "quoted value expected for %s", a->name);
		ps->p++;
		for (n = 0; ps->p[n] != quote; n++) {
			if (!ps->p[n] || ps->p[n] == '<' || ps->p[n] == '&' || ps->p[n] == '\n')
				return parse_error(ps, ps->line, "bad value of %s", a->name);
			if (n + 1 >= MAX_VALUE)
				return parse_error(ps, ps->line, "value of %s too long", a->name);
		}
		memcpy(a->value, ps->p, n);
		a->value[n] = '\0';
		ps->p += n + 1;
		t->nr_attrs++;
	}
}

static struct attr *find_attr(struct tag *t, const char *name)
{
	int i;

	for (i = 0; i < t->nr_attrs; i++) {
		if (!strcmp(t->attrs[i].name, name)) {
			t->attrs[i].used = 1;
			return &t->attrs[i];
		}
	}
	return NULL;
}

/* 0 found, 1 absent (and not @required), -1 error */
static int get_u64(struct parser *ps, struct tag *t, const char *name, int required,
		   __u64 max, __u64 *val)
{
	struct attr *a = find_attr(t, name);

	if (!a) {
		if (required)
			return parse_error(ps, t->line, "<%s> needs a %s attribute", t->name, name);
		return 1;
	}
	if (cor_parse_u64(a->value, val) || *val > max)
		return parse_error(ps, t->line, "<%s %s=\"%s\">: not a number up to %llu",
				   t->name, name, a->value, max);
	return 0;
}

static int check_attrs_used(struct parser *ps, struct tag *t)
{
	int i;

	for (i = 0; i < t->nr_attrs; i++)
		if (!t->attrs[i].used)
			return parse_error(ps, t->line, "<%s>: unknown attribute %s", t->name,
					   t->attrs[i].name);
	return 0;
}

static int parse_root(struct parser *ps, struct tag *t, struct dump *d)
{
	struct attr *a;

	if (t->type != TAG_OPEN || strcmp(t->name, "cor_metadata"))
		return parse_error(ps, t->line, "<cor_metadata ...> expected, not <%s%s>",
				   t->type == TAG_CLOSE ? "/" : "", t->name);
	if (get_u64(ps, t, "version", 1, ~0U, &d->version) ||
	    get_u64(ps, t, "region_sectors", 1, ~0ULL, &d->region_sectors) ||
	    get_u64(ps, t, "target_sectors", 1, ~0ULL, &d->target_sectors))
		return -1;
	switch (get_u64(ps, t, "nr_regions", 0, ~0ULL, &d->nr_regions)) {
	case -1:
		return -1;
	case 0:
		d->has_nr_regions = 1;
	}
	switch (get_u64(ps, t, "active_slot", 0, DM_COR_NR_SUPERBLOCKS - 1, &d->active_slot)) {
	case -1:
		return -1;
	case 0:
		d->has_active_slot = 1;
	}
	a = find_attr(t, "uuid");
	if (a) {
		if (cor_parse_uuid(a->value, d->uuid))
			return parse_error(ps, t->line,
					   "uuid \"%s\" is not 32 hex digits",
					   a->value);
		d->has_uuid = 1;
	}
	return check_attrs_used(ps, t);
}

/* Geometry and uuid from the root element: the defaults of the superblocks */
static int root_defaults(struct parser *ps, struct dump *d, int line)
{
	const char *why;

	if (d->version != DM_COR_METADATA_VERSION)
		return parse_error(ps, line, "metadata version %llu is not supported (only %d)",
				   d->version, DM_COR_METADATA_VERSION);
	if (cor_geom_compute(d->region_sectors, d->target_sectors, &d->g, &why))
		return parse_error(ps, line, "%s", why);
	if (d->has_nr_regions && d->nr_regions != d->g.nr_regions)
		return parse_error(ps, line,
				   "nr_regions %llu, but %llu sectors in regions of %llu make %llu",
				   d->nr_regions, d->target_sectors, d->region_sectors,
				   d->g.nr_regions);
	if (!d->has_uuid && getrandom(d->uuid, sizeof(d->uuid), 0) != sizeof(d->uuid)) {
		cor_err("cannot get random bytes for a uuid: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* An optional attribute: @field is left as it is when it is absent */
static int opt_u64(struct parser *ps, struct tag *t, const char *name, __u64 *field)
{
	return get_u64(ps, t, name, 0, ~0ULL, field) < 0 ? -1 : 0;
}

static int opt_u32(struct parser *ps, struct tag *t, const char *name, __u32 *field)
{
	__u64 v;
	int r = get_u64(ps, t, name, 0, ~0U, &v);

	if (!r)
		*field = v;
	return r < 0 ? -1 : 0;
}

static int parse_superblock(struct parser *ps, struct tag *t, struct dump *d)
{
	struct cor_sb *sb;
	struct attr *a;
	__u64 slot, v;

	if (t->type != TAG_EMPTY)
		return parse_error(ps, t->line, "<superblock .../> takes no content");
	if (get_u64(ps, t, "slot", 1, DM_COR_NR_SUPERBLOCKS - 1, &slot))
		return -1;
	if (d->slot_seen[slot])
		return parse_error(ps, t->line, "superblock slot %llu given twice", slot);
	d->slot_seen[slot] = 1;
	a = find_attr(t, "state");
	if (a && !strcmp(a->value, "unused"))
		return check_attrs_used(ps, t);
	if (a && strcmp(a->value, "valid"))
		return parse_error(ps, t->line, "state \"%s\": valid or unused expected", a->value);

	d->used[slot] = 1;
	sb = &d->sb[slot];
	cor_sb_init(sb, &d->g, 0, 0, 0, d->uuid);
	if (get_u64(ps, t, "generation", 1, ~0ULL, &sb->generation) ||
	    get_u64(ps, t, "active_area", 1, ~0U, &v) < 0)
		return -1;
	sb->active_area = v;
	if (opt_u32(ps, t, "flags", &sb->flags) ||
	    opt_u32(ps, t, "version", &sb->version) ||
	    opt_u32(ps, t, "block_sectors", &sb->block_sectors) ||
	    opt_u64(ps, t, "region_sectors", &sb->region_sectors) ||
	    opt_u64(ps, t, "target_sectors", &sb->target_sectors) ||
	    opt_u64(ps, t, "nr_regions", &sb->nr_regions) ||
	    opt_u64(ps, t, "bitmap_blocks", &sb->bitmap_blocks) ||
	    opt_u64(ps, t, "nr_metadata_blocks", &sb->nr_metadata_blocks) ||
	    opt_u32(ps, t, "reserved", &sb->reserved))
		return -1;
	a = find_attr(t, "uuid");
	if (a && cor_parse_uuid(a->value, sb->uuid))
		return parse_error(ps, t->line, "uuid \"%s\" is not 32 hex digits", a->value);
	return check_attrs_used(ps, t);
}

static int add_range(struct parser *ps, struct tag *t, struct dump *d, struct ranges *rs)
{
	__u64 first, count;
	struct range *n;

	if (t->type != TAG_EMPTY || strcmp(t->name, "range"))
		return parse_error(ps, t->line,
				   "<range begin=\"N\" length=\"N\"/> expected, not <%s%s>",
				   t->type == TAG_CLOSE ? "/" : "", t->name);
	if (get_u64(ps, t, "begin", 1, ~0ULL, &first) ||
	    get_u64(ps, t, "length", 1, ~0ULL, &count) || check_attrs_used(ps, t))
		return -1;
	if (!count || first >= d->g.nr_regions || count > d->g.nr_regions - first)
		return parse_error(ps, t->line,
				   "range %llu+%llu is empty or past the last region (%llu regions)",
				   first, count, d->g.nr_regions);
	if (rs->nr == rs->alloc) {
		rs->alloc = rs->alloc ? rs->alloc * 2 : 256;
		n = realloc(rs->r, rs->alloc * sizeof(*n));
		if (!n) {
			cor_err("out of memory");
			return -1;
		}
		rs->r = n;
	}
	rs->r[rs->nr].first = first;
	rs->r[rs->nr].count = count;
	rs->nr++;
	return 0;
}

static int parse_bitmap(struct parser *ps, struct tag *t, struct dump *d, unsigned int kind)
{
	struct ranges *rs = &d->bits[kind];
	struct tag r;
	int ret;

	if (t->type == TAG_CLOSE)
		return parse_error(ps, t->line, "unexpected </%s>", t->name);
	if (rs->seen)
		return parse_error(ps, t->line, "<%s> given twice", t->name);
	rs->seen = 1;
	ret = get_u64(ps, t, "count", 0, ~0ULL, &rs->count);
	if (ret < 0 || check_attrs_used(ps, t))
		return -1;
	rs->has_count = !ret;
	if (t->type == TAG_EMPTY)
		return 0;
	for (;;) {
		ret = next_tag(ps, &r);
		if (ret < 0)
			return -1;
		if (ret)
			return parse_error(ps, ps->line, "unexpected end: </%s> missing", t->name);
		if (r.type == TAG_CLOSE && !strcmp(r.name, t->name))
			return 0;
		if (add_range(ps, &r, d, rs))
			return -1;
	}
}

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

/* Sort and merge; returns the number of regions covered */
static __u64 normalize(struct ranges *rs)
{
	size_t i, n = 0;
	__u64 total = 0, end;

	if (!rs->nr)
		return 0;
	qsort(rs->r, rs->nr, sizeof(*rs->r), cmp_range);
	for (i = 1; i < rs->nr; i++) {
		end = rs->r[n].first + rs->r[n].count;
		if (rs->r[i].first <= end) {
			if (rs->r[i].first + rs->r[i].count > end)
				rs->r[n].count = rs->r[i].first + rs->r[i].count - rs->r[n].first;
		} else {
			rs->r[++n] = rs->r[i];
		}
	}
	rs->nr = n + 1;
	for (i = 0; i < rs->nr; i++)
		total += rs->r[i].count;
	return total;
}

/* Is [first, first + count) inside the (normalized) ranges? */
static bool covered(const struct ranges *rs, __u64 first, __u64 count)
{
	size_t lo = 0, hi = rs->nr, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (rs->r[mid].first <= first)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return false;
	return first + count <= rs->r[lo - 1].first + rs->r[lo - 1].count;
}

static void sb_problem(void *ctx, const char *fmt, ...) cor_printf(2, 3);
static void sb_problem(void *ctx, const char *fmt, ...)
{
	struct parser *ps = ctx;
	va_list ap;

	va_start(ap, fmt);
	cor_vmsg(stderr, ps->file, ": the active superblock: ", fmt, ap);
	va_end(ap);
}

static int check_dump(struct parser *ps, struct dump *d)
{
	enum cor_slot_state state[DM_COR_NR_SUPERBLOCKS];
	struct cor_geom g;
	unsigned int kind;
	__u64 total;
	size_t i;
	int slot, newest, bad = 0;

	for (slot = 0; slot < DM_COR_NR_SUPERBLOCKS; slot++) {
		if (!d->slot_seen[slot])
			return parse_error(ps, ps->line,
					   "<superblock slot=\"%d\" .../> missing",
					   slot);
		state[slot] = d->used[slot] ? COR_SLOT_VALID : COR_SLOT_ZERO;
	}
	newest = cor_newest_slot(state, d->sb);
	d->newest = newest;
	if (newest < 0)
		return parse_error(ps, ps->line,
				   "no valid superblock: at least one slot must be used");
	if (d->has_active_slot && d->active_slot != (__u64)newest)
		return parse_error(ps, ps->line,
				   "active_slot is %llu, but slot %d has the newest generation",
				   d->active_slot, newest);
	/* The superblock the kernel loads must pass its checks */
	if (cor_sb_check(&d->sb[newest], 0, &g, sb_problem, ps) ||
	    g.region_sectors != d->g.region_sectors || g.target_sectors != d->g.target_sectors)
		bad = 1;
	if (bad)
		return parse_error(ps, ps->line,
				   "the active superblock (slot %d) does not match the geometry of <cor_metadata>, or is invalid",
				   newest);
	if (d->sb[newest].flags & DM_COR_SB_NEEDS_CHECK)
		cor_err("note: the active superblock has the needs-check flag: the kernel refuses it until cor_check --clear-needs-check-flag clears it");

	for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++) {
		total = normalize(&d->bits[kind]);
		if (d->bits[kind].has_count && d->bits[kind].count != total)
			return parse_error(ps, ps->line,
					   "<%s count=\"%llu\">, but its ranges cover %llu regions",
					   cor_bitmap_name(kind), d->bits[kind].count, total);
		d->bits[kind].count = total;
	}
	for (i = 0; i < d->bits[1].nr; i++)
		if (!covered(&d->bits[0], d->bits[1].r[i].first, d->bits[1].r[i].count))
			return parse_error(ps, ps->line,
					   "dirty regions %llu+%llu are not all hydrated",
					   d->bits[1].r[i].first, d->bits[1].r[i].count);
	return 0;
}

static int parse_dump(const char *file, char *text, struct dump *d)
{
	struct parser ps = { .file = file, .p = text, .line = 1 };
	struct tag t;
	int r, root_line;

	memset(d, 0, sizeof(*d));
	r = next_tag(&ps, &t);
	if (r)
		return r < 0 ? -1 : parse_error(&ps, ps.line,
						"empty dump: <cor_metadata> expected");
	if (parse_root(&ps, &t, d))
		return -1;
	root_line = t.line;
	if (root_defaults(&ps, d, root_line))
		return -1;
	for (;;) {
		r = next_tag(&ps, &t);
		if (r < 0)
			return -1;
		if (r)
			return parse_error(&ps, ps.line, "unexpected end: </cor_metadata> missing");
		if (t.type == TAG_CLOSE && !strcmp(t.name, "cor_metadata"))
			break;
		if (!strcmp(t.name, "superblock"))
			r = parse_superblock(&ps, &t, d);
		else if (!strcmp(t.name, "hydrated"))
			r = parse_bitmap(&ps, &t, d, DM_COR_BITMAP_HYDRATED);
		else if (!strcmp(t.name, "dirty"))
			r = parse_bitmap(&ps, &t, d, DM_COR_BITMAP_DIRTY);
		else
			r = parse_error(&ps, t.line, "unexpected <%s%s> in <cor_metadata>",
					t.type == TAG_CLOSE ? "/" : "", t.name);
		if (r)
			return -1;
	}
	r = next_tag(&ps, &t);
	if (r < 0)
		return -1;
	if (!r)
		return parse_error(&ps, t.line, "<%s> after </cor_metadata>", t.name);
	return check_dump(&ps, d);
}

static char *read_text(const char *path, size_t *size)
{
	size_t len = 0, alloc = 65536;
	char *buf, *n;
	ssize_t got;
	int fd;

	fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
	if (fd < 0) {
		cor_err("%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(alloc);
	if (!buf)
		goto nomem;
	for (;;) {
		if (len + 1 == alloc) {
			if (alloc >= MAX_DUMP_BYTES) {
				cor_err("%s: larger than %llu bytes: not a dump", path,
					MAX_DUMP_BYTES);
				goto bad;
			}
			alloc *= 2;
			n = realloc(buf, alloc);
			if (!n)
				goto nomem;
			buf = n;
		}
		got = read(fd, buf + len, alloc - 1 - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			cor_err("%s: %s", path, strerror(errno));
			goto bad;
		}
		if (!got)
			break;
		len += got;
	}
	buf[len] = '\0';
	*size = len;
	if (fd)
		close(fd);
	return buf;

nomem:
	cor_err("out of memory");
bad:
	free(buf);
	if (fd)
		close(fd);
	return NULL;
}

static void set_bits(__u64 *words, __u64 from, __u64 to)
{
	for (; from < to && from % 64; from++)
		words[from / 64] |= 1ULL << (from % 64);
	for (; from + 64 <= to; from += 64)
		words[from / 64] = ~0ULL;
	for (; from < to; from++)
		words[from / 64] |= 1ULL << (from % 64);
}

static int fill_block(void *ctx, __u64 index, __u64 *hydrated, __u64 *dirty)
{
	__u64 *words[DM_COR_NR_BITMAPS] = { hydrated, dirty };
	struct dump *d = ctx;
	__u64 lo = index * DM_COR_BITS_PER_BLOCK;
	__u64 hi = lo + cor_block_nbits(&d->g, index), a, b;
	unsigned int kind;
	struct ranges *rs;
	size_t i;

	for (kind = 0; kind < DM_COR_NR_BITMAPS; kind++) {
		rs = &d->bits[kind];
		while (rs->cursor < rs->nr &&
		       rs->r[rs->cursor].first + rs->r[rs->cursor].count <= lo)
			rs->cursor++;
		for (i = rs->cursor; i < rs->nr && rs->r[i].first < hi; i++) {
			a = rs->r[i].first > lo ? rs->r[i].first : lo;
			b = rs->r[i].first + rs->r[i].count;
			if (b > hi)
				b = hi;
			set_bits(words[kind], a - lo, b - lo);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct cor_io_args args;
	const char *input, *output;
	struct cor_dev out;
	struct dump d;
	size_t size;
	char *text;

	cor_prog = "cor_restore";
	if (cor_io_args(argc, argv, show_usage, "-i DUMP and -o METADATA_DEV", &args))
		return 2;
	input = args.input;
	output = args.output;

	text = read_text(input, &size);
	if (!text)
		return 2;
	if (strlen(text) != size) {
		cor_err("%s: contains NUL bytes: not a dump", input);
		return 1;
	}
	if (parse_dump(strcmp(input, "-") ? input : "<stdin>", text, &d))
		return 1;
	free(text);

	if (cor_dev_open(&out, output, COR_OPEN_CREATE))
		return 2;
	if (cor_dev_reserve(&out, d.g.nr_metadata_blocks))
		goto bad;
	if (cor_write_image(&out, &d.g, d.sb, d.used, fill_block, &d) || cor_dev_close(&out))
		goto bad;

	if (!args.quiet)
		printf("%s: %s: generation %llu, %llu regions, %llu hydrated, %llu dirty\n",
		       cor_prog, output, d.sb[d.newest].generation, d.g.nr_regions, d.bits[0].count,
		       d.bits[1].count);
	return 0;

bad:
	if (out.created)
		unlink(output);
	return 2;
}
