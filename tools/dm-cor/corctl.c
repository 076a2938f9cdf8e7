// SPDX-License-Identifier: GPL-2.0-only
/*
 * corctl: operator front end for dm-cor (copy-on-read) devices.
 *
 *   corctl status DEV [--json] [--once | --interval S]
 *   corctl watch DEV [--interval S] [--timeout S]
 *   corctl wait DEV [--timeout S] [--interval S] [--quiet]
 *   corctl prefetch DEV FILE|RANGE... [--wait [--timeout S]]
 *   corctl finalize DEV [--dry-run]
 *   corctl create NAME ORIGIN DEST METADATA [options]   (corctl-setup.c)
 *   corctl activate|deactivate [--cortab FILE] [NAME...]
 *   corctl metadata-size --size SIZE --region-size SIZE
 *
 * DEV is a dm name, /dev/mapper/NAME, /dev/dm-N or MAJOR:MINOR.  Every
 * subcommand talks to the kernel through libdevmapper; see corctl(8).
 *
 * Exit status: 0 success, 1 failure or refusal (not a cor device, device
 * incomplete, ro/fail mode, hydration stopped on errors, ...), 2 bad
 * arguments, 124 timeout (wait, watch, prefetch --wait), 130 interrupted
 * (wait).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "corctl.h"
#include "cor-meta.h"

#define MAX_WORDS	64	/* features, core args, counters: words each */
#define RATE_SAMPLES	16	/* samples kept for the rate of watch/wait */
#define RATE_WINDOW	10.0	/* seconds of samples the rate looks at */
#define BAR_WIDTH	30

const char *prog = "corctl";
int verbose;

/* ------------------------------------------------------------------ */
/* Messages */

void err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * libdevmapper's log: its messages are kept (the last error is appended to
 * ours) and printed only with -v, so that an expected failure (an
 * interrupted wait, an unsupported message) does not clutter stderr.
 */
char dm_last_error[512];

static void cor_printf(5, 6)
dm_logger(int level, const char *file, int line, int dm_errno_or_class,
	  const char *fmt, ...)
{
	va_list ap;
	int lvl = level & 7;

	(void)file;
	(void)line;
	(void)dm_errno_or_class;
	if (lvl > 4 && verbose < 2)	/* notices, info and debug */
		return;
	va_start(ap, fmt);
	if (lvl <= 3)
		vsnprintf(dm_last_error, sizeof(dm_last_error), fmt, ap);
	va_end(ap);
	if (verbose) {
		va_start(ap, fmt);
		fprintf(stderr, "%s: libdevmapper: ", prog);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
}

/* errno text of a failed task, with libdevmapper's last message */
const char *task_error(struct dm_task *dmt)
{
	static char buf[640];
	int e = dmt ? dm_task_get_errno(dmt) : 0;

	if (e && dm_last_error[0])
		snprintf(buf, sizeof(buf), "%s (%s)", strerror(e), dm_last_error);
	else if (e)
		snprintf(buf, sizeof(buf), "%s", strerror(e));
	else if (dm_last_error[0])
		snprintf(buf, sizeof(buf), "%s", dm_last_error);
	else
		snprintf(buf, sizeof(buf), "unknown error");
	return buf;
}

/* ------------------------------------------------------------------ */
/* Time and signals */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

static void on_tick(int sig)
{
	(void)sig;
}

/*
 * SIGINT/SIGTERM end a wait, SIGALRM interrupts a blocked WAITEVENT ioctl:
 * no SA_RESTART, so the ioctl fails with EINTR.
 */
static void setup_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_tick;
	sigaction(SIGALRM, &sa, NULL);
}

/* Fire SIGALRM after FIRST seconds, then every EVERY seconds (0: stop) */
static void set_ticker(double first, double every)
{
	struct itimerval it;

	memset(&it, 0, sizeof(it));
	if (first > 0) {
		if (first < 0.001)
			first = 0.001;
		it.it_value.tv_sec = (time_t)first;
		it.it_value.tv_usec = (suseconds_t)((first - (time_t)first) * 1e6);
		it.it_interval.tv_sec = (time_t)every;
		it.it_interval.tv_usec = (suseconds_t)((every - (time_t)every) * 1e6);
	}
	setitimer(ITIMER_REAL, &it, NULL);
}

static void sleep_for(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (time_t)s) * 1e9);
	nanosleep(&ts, NULL);	/* a signal ends it early: fine */
}

/* ------------------------------------------------------------------ */
/* Number parsing */

static bool parse_u64(const char *s, __u64 *v)
{
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return !errno && !*end;
}

/* Seconds: a non-negative decimal number */
static bool parse_seconds(const char *s, double *v)
{
	char *end;

	if (!s || !(isdigit((unsigned char)*s) || *s == '.'))
		return false;
	errno = 0;
	*v = strtod(s, &end);
	return !errno && !*end && *v >= 0 && *v < 1e9;
}

/* "START+LEN" or "START-END" (END excluded); false: not a range */
static bool parse_range(const char *s, __u64 *start, __u64 *len, char *why, size_t whylen)
{
	const char *p;
	__u64 a, b;
	char op;

	*why = '\0';
	if (cor_parse_size(s, &a, &p))
		return false;
	op = *p;
	if (op != '+' && op != '-')
		return false;
	if (cor_parse_size(p + 1, &b, &p) || *p)
		return false;
	if (op == '+') {
		if (!b || a + b < a) {
			snprintf(why, whylen, "range '%s' is empty or too large", s);
			return true;
		}
		*start = a;
		*len = b;
	} else {
		if (b <= a) {
			snprintf(why, whylen, "range '%s' is empty (END is not included)", s);
			return true;
		}
		*start = a;
		*len = b - a;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Formatting */

static const char *fmt_bytes(__u64 b, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)b;
	int u = 0;

	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (!u)
		snprintf(buf, len, "%llu B", b);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

static const char *fmt_duration(double s, char *buf, size_t len)
{
	__u64 t;

	if (s < 0 || s > 1e12) {
		snprintf(buf, len, "unknown");
		return buf;
	}
	t = (__u64)(s + 0.5);
	if (t >= 86400)
		snprintf(buf, len, "%llud%02lluh%02llum", t / 86400,
			 t / 3600 % 24, t / 60 % 60);
	else if (t >= 3600)
		snprintf(buf, len, "%llu:%02llu:%02llu", t / 3600,
			 t / 60 % 60, t % 60);
	else
		snprintf(buf, len, "%llu:%02llu", t / 60, t % 60);
	return buf;
}

/* A JSON string: quotes, escapes, and U+FFFD for bytes that are not UTF-8 */
static void json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int n, i;

	fputc('"', f);
	while (*p) {
		if (*p == '"' || *p == '\\') {
			fputc('\\', f);
			fputc(*p++, f);
		} else if (*p == '\n') {
			fputs("\\n", f);
			p++;
		} else if (*p == '\t') {
			fputs("\\t", f);
			p++;
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p++);
		} else if (*p < 0x80) {
			fputc(*p++, f);
		} else {
			/* length of a well-formed UTF-8 sequence, 0 if not */
			if (*p >= 0xc2 && *p <= 0xdf)
				n = 2;
			else if (*p >= 0xe0 && *p <= 0xef)
				n = 3;
			else if (*p >= 0xf0 && *p <= 0xf4)
				n = 4;
			else
				n = 0;
			for (i = 1; i < n; i++)
				if ((p[i] & 0xc0) != 0x80)
					n = 0;
			/* overlongs, surrogates and > U+10FFFF */
			if ((n == 3 && *p == 0xe0 && p[1] < 0xa0) ||
			    (n == 3 && *p == 0xed && p[1] >= 0xa0) ||
			    (n == 4 && *p == 0xf0 && p[1] < 0x90) ||
			    (n == 4 && *p == 0xf4 && p[1] >= 0x90))
				n = 0;
			if (!n) {
				fputs("\\ufffd", f);
				p++;
			} else {
				fwrite(p, 1, n, f);
				p += n;
			}
		}
	}
	fputc('"', f);
}

/* A value from the status line: a JSON number if it is one, else a string */
static void json_word(FILE *f, const char *s)
{
	__u64 v;

	if (parse_u64(s, &v))
		fprintf(f, "%llu", v);
	else
		json_str(f, s);
}

/* ------------------------------------------------------------------ */
/* Devices */

/* dm_task_create + name, or NULL with a message */
struct dm_task *new_task(int type, const char *name)
{
	struct dm_task *dmt = dm_task_create(type);

	if (!dmt) {
		err("cannot create a device-mapper task (is device-mapper available?)");
		return NULL;
	}
	if (name && !dm_task_set_name(dmt, name)) {
		err("invalid device name '%s'", name);
		dm_task_destroy(dmt);
		return NULL;
	}
	return dmt;
}

/*
 * Find the dm device named by ARG: a dm name, a block device path
 * (/dev/mapper/NAME, /dev/dm-N) or MAJOR:MINOR.
 */
int resolve_dev(const char *arg, struct dev *d)
{
	unsigned int maj, min;
	struct dm_task *dmt;
	struct dm_info info;
	bool by_number = false;
	const char *n;
	struct stat st;
	char c;

	memset(d, 0, sizeof(*d));
	if (strchr(arg, '/')) {
		if (stat(arg, &st)) {
			err("%s: %s", arg, strerror(errno));
			return EXIT_FAIL;
		}
		if (!S_ISBLK(st.st_mode)) {
			err("%s is not a block device", arg);
			return EXIT_FAIL;
		}
		maj = major(st.st_rdev);
		min = minor(st.st_rdev);
		by_number = true;
	} else if (sscanf(arg, "%u:%u%c", &maj, &min, &c) == 2) {
		by_number = true;
	}
	if (by_number && !dm_is_dm_major(maj)) {
		err("%s (%u:%u) is not a device-mapper device", arg, maj, min);
		return EXIT_FAIL;
	}

	dmt = new_task(DM_DEVICE_INFO, by_number ? NULL : arg);
	if (!dmt)
		return EXIT_FAIL;
	if (by_number && (!dm_task_set_major(dmt, maj) || !dm_task_set_minor(dmt, min))) {
		dm_task_destroy(dmt);
		err("cannot look up %u:%u", maj, min);
		return EXIT_FAIL;
	}
	if (!dm_task_run(dmt) || !dm_task_get_info(dmt, &info)) {
		err("%s: cannot get device information: %s", arg, task_error(dmt));
		dm_task_destroy(dmt);
		return EXIT_FAIL;
	}
	if (!info.exists) {
		err("%s: no such device-mapper device", arg);
		dm_task_destroy(dmt);
		return EXIT_FAIL;
	}
	n = dm_task_get_name(dmt);
	snprintf(d->name, sizeof(d->name), "%s", n ? n : arg);
	d->major = info.major;
	d->minor = info.minor;
	d->read_only = info.read_only;
	dm_task_destroy(dmt);
	return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* Status */

struct pair {
	const char *name;
	const char *value;
};

struct cor_status {
	char *buf;			/* copy of the status line, tokenised */
	char *line;			/* the status line as the kernel printed it */
	struct dm_info info;
	__u64 start, length;
	double t;			/* when it was taken (CLOCK_MONOTONIC) */

	bool volatile_md;
	__u64 md_block_sectors, md_used, md_total;
	__u64 region_sectors;
	__u64 hydrated, total_regions, hydrating, dirty;
	const char *mode;
	int nr_features;
	const char *features[MAX_WORDS];
	int nr_core;
	struct pair core[MAX_WORDS / 2];
	int nr_counters;
	struct pair counters[MAX_WORDS / 2];
};

static void status_free(struct cor_status *st)
{
	free(st->buf);
	free(st->line);
	st->buf = NULL;
	st->line = NULL;
}

static bool counter(const struct cor_status *st, const char *name, __u64 *v)
{
	int i;

	for (i = 0; i < st->nr_counters; i++)
		if (!strcmp(st->counters[i].name, name))
			return parse_u64(st->counters[i].value, v);
	return false;
}

static bool complete(const struct cor_status *st)
{
	return st->total_regions && st->hydrated >= st->total_regions;
}

/* "a/b" */
static bool parse_fraction(const char *s, __u64 *a, __u64 *b)
{
	char tmp[64], *slash;

	if (snprintf(tmp, sizeof(tmp), "%s", s) >= (int)sizeof(tmp))
		return false;
	slash = strchr(tmp, '/');
	if (!slash)
		return false;
	*slash = '\0';
	return parse_u64(tmp, a) && parse_u64(slash + 1, b);
}

/* A word count of the status line: at most LEFT words follow, even if PAIRS */
static bool parse_count(const char *s, int left, bool pairs, int *cnt)
{
	__u64 v;

	if (!parse_u64(s, &v) || v > MAX_WORDS || (int)v > left || (pairs && v % 2))
		return false;
	*cnt = (int)v;
	return true;
}

/* Split the status line; false with *WHY on anything unexpected */
static bool parse_status(struct cor_status *st, const char **why)
{
	char *w[3 * MAX_WORDS + 16], *save = NULL, *p;
	int n = 0, i = 0, k, cnt;

	for (p = strtok_r(st->buf, " ", &save); p; p = strtok_r(NULL, " ", &save)) {
		if (n == (int)ARRAY_SIZE(w)) {
			*why = "too many words";
			return false;
		}
		w[n++] = p;
	}
	if (n < 10) {
		*why = "too few words";
		return false;
	}
	if (!strcmp(w[0], "-") && !strcmp(w[1], "-/-")) {
		st->volatile_md = true;
	} else if (!parse_u64(w[0], &st->md_block_sectors) ||
		   !parse_fraction(w[1], &st->md_used, &st->md_total)) {
		*why = "bad metadata fields";
		return false;
	}
	if (!parse_u64(w[2], &st->region_sectors) || !st->region_sectors ||
	    !parse_fraction(w[3], &st->hydrated, &st->total_regions) ||
	    !parse_u64(w[4], &st->hydrating) || !parse_u64(w[5], &st->dirty)) {
		*why = "bad region counts";
		return false;
	}
	st->mode = w[6];
	i = 7;

	/* <#features> <feature>* */
	if (!parse_count(w[i], n - i - 1, false, &cnt)) {
		*why = "bad feature count";
		return false;
	}
	i++;
	for (k = 0; k < cnt; k++)
		st->features[st->nr_features++] = w[i++];

	/* <#core args> <name> <value> ... */
	if (i >= n || !parse_count(w[i], n - i - 1, true, &cnt)) {
		*why = "bad core argument count";
		return false;
	}
	i++;
	for (k = 0; k < cnt; k += 2, i += 2) {
		st->core[st->nr_core].name = w[i];
		st->core[st->nr_core++].value = w[i + 1];
	}

	/* <#counter words> <name> <value> ... (absent in old modules) */
	if (i == n)
		return true;
	if (!parse_count(w[i], n - i - 1, true, &cnt) || i + 1 + cnt != n) {
		*why = "bad counter count";
		return false;
	}
	i++;
	for (k = 0; k < cnt; k += 2, i += 2) {
		st->counters[st->nr_counters].name = w[i];
		st->counters[st->nr_counters++].value = w[i + 1];
	}
	return true;
}

/*
 * The number of targets of the table DMT returned; the first one's start,
 * length, type and parameters (owned by DMT).
 */
static int first_target(struct dm_task *dmt, __u64 *start, __u64 *length,
			char **type, char **params)
{
	uint64_t s, l;		/* libdevmapper's type */
	void *next = NULL;
	char *ty, *pa;
	int nr = 0;

	do {
		next = dm_get_next_target(dmt, next, &s, &l, &ty, &pa);
		if (!ty)
			break;
		if (!nr++) {
			*start = s;
			*length = l;
			*type = ty;
			*params = pa;
		}
	} while (next);
	return nr;
}

/*
 * Take the status of D (a single cor target) into ST.  The event number in
 * st->info is read by the kernel before the status line: waiting for an
 * event after it cannot miss one that the status does not show.
 */
static int get_status(const struct dev *d, struct cor_status *st)
{
	char *type = NULL, *params = NULL;
	const char *why = "";
	struct dm_task *dmt;
	int nr, r = EXIT_FAIL;

	memset(st, 0, sizeof(*st));
	dmt = new_task(DM_DEVICE_STATUS, d->name);
	if (!dmt)
		return EXIT_FAIL;
	if (!dm_task_run(dmt) || !dm_task_get_info(dmt, &st->info)) {
		err("%s: cannot get the status: %s", d->name, task_error(dmt));
		goto out;
	}
	if (!st->info.exists) {
		err("%s: device no longer exists", d->name);
		goto out;
	}
	st->t = now();
	nr = first_target(dmt, &st->start, &st->length, &type, &params);
	if (!nr) {
		err("%s: device has no active table", d->name);
		goto out;
	}
	if (nr > 1 || strcmp(type, "cor")) {
		if (nr > 1)
			err("%s is not a cor device: its table has %d targets", d->name, nr);
		else
			err("%s is not a cor device (its target is '%s')", d->name, type);
		goto out;
	}
	st->line = strdup(params ? params : "");
	st->buf = strdup(params ? params : "");
	if (!st->line || !st->buf) {
		err("out of memory");
		goto out;
	}
	if (!parse_status(st, &why)) {
		err("%s: unexpected cor status (%s): '%s'", d->name, why, st->line);
		goto out;
	}
	r = EXIT_OK;
out:
	if (r)
		status_free(st);
	dm_task_destroy(dmt);
	return r;
}

/*
 * Block until the device's event counter passes EVENT_NR, a signal
 * arrives (the SIGALRM ticker), or the kernel refuses.  Returns false if
 * waiting for events does not work, so that the caller polls instead.
 */
static bool wait_event(const struct dev *d, uint32_t event_nr)
{
	struct dm_task *dmt;
	bool ok = true;
	int e;

	dmt = dm_task_create(DM_DEVICE_WAITEVENT);
	if (!dmt)
		return false;
	if (!dm_task_set_name(dmt, d->name) || !dm_task_set_event_nr(dmt, event_nr)) {
		dm_task_destroy(dmt);
		return false;
	}
	if (!dm_task_run(dmt)) {
		e = dm_task_get_errno(dmt);
		/* EINTR: the ticker or a signal; ENXIO: device gone (status says) */
		if (e != EINTR && e != ENXIO)
			ok = false;
		if (!ok && verbose)
			err("%s: waiting for events failed (%s), polling instead",
			    d->name, task_error(dmt));
	}
	dm_task_destroy(dmt);
	return ok;
}

/* Send a message to sector 0; *REPLY (malloc'ed) gets the answer if asked */
static int send_message(const struct dev *d, const char *msg, char **reply, int *err_no)
{
	struct dm_task *dmt;
	const char *resp;
	int r = EXIT_FAIL;

	*err_no = 0;
	dm_last_error[0] = '\0';
	dmt = new_task(DM_DEVICE_TARGET_MSG, d->name);
	if (!dmt)
		return EXIT_FAIL;
	if (!dm_task_set_sector(dmt, 0) || !dm_task_set_message(dmt, msg)) {
		err("cannot build the message '%s'", msg);
		goto out;
	}
	if (!dm_task_run(dmt)) {
		*err_no = dm_task_get_errno(dmt);
		if (!*err_no)
			*err_no = EIO;
		goto out;
	}
	if (reply) {
		resp = dm_task_get_message_response(dmt);
		*reply = strdup(resp ? resp : "");
		if (!*reply)
			goto out;
	}
	r = EXIT_OK;
out:
	dm_task_destroy(dmt);
	return r;
}

/* ------------------------------------------------------------------ */
/* Rate */

struct sample {
	double t;
	__u64 hydrated;
};

struct rate {
	struct sample s[RATE_SAMPLES];
	int n;
	__u64 region_sectors, total_regions;	/* a change resets */
	bool known;
	double interval;		/* seconds the rate covers */
	double regions_per_s, bytes_per_s, eta;	/* eta < 0: unknown */
};

static void rate_add(struct rate *r, const struct cor_status *st)
{
	const struct sample *old;
	__u64 left;
	double dt;
	int i;

	if (r->region_sectors != st->region_sectors || r->total_regions != st->total_regions ||
	    (r->n && st->hydrated < r->s[r->n - 1].hydrated)) {
		r->n = 0;
		r->region_sectors = st->region_sectors;
		r->total_regions = st->total_regions;
	}
	if (r->n == RATE_SAMPLES) {
		memmove(r->s, r->s + 1, sizeof(r->s[0]) * (RATE_SAMPLES - 1));
		r->n--;
	}
	r->s[r->n].t = st->t;
	r->s[r->n++].hydrated = st->hydrated;

	/* the oldest sample within the window */
	for (i = 0; i < r->n - 1; i++)
		if (st->t - r->s[i].t <= RATE_WINDOW)
			break;
	old = &r->s[i];
	dt = st->t - old->t;
	r->known = dt >= 0.2;
	if (!r->known)
		return;
	r->interval = dt;
	r->regions_per_s = (st->hydrated - old->hydrated) / dt;
	r->bytes_per_s = r->regions_per_s * (st->region_sectors << SECTOR_SHIFT);
	left = st->total_regions - (st->hydrated < st->total_regions ? st->hydrated :
				    st->total_regions);
	if (!left)
		r->eta = 0;
	else if (r->regions_per_s > 0)
		r->eta = left / r->regions_per_s;
	else
		r->eta = -1;
}

/* ------------------------------------------------------------------ */
/* Progress numbers */

static __u64 hydrated_bytes(const struct cor_status *st)
{
	__u64 s = st->hydrated * st->region_sectors;

	/* the last region may be short */
	if (s > st->length || complete(st))
		s = st->length;
	return s << SECTOR_SHIFT;
}

static double percent(const struct cor_status *st)
{
	if (!st->total_regions)
		return 100.0;
	if (complete(st))
		return 100.0;
	/* never shows 100.0 before it is */
	return (double)(st->hydrated * 1000 / st->total_regions) / 10.0;
}

/* Hydration state in words */
static const char *hydration_state(const struct cor_status *st)
{
	__u64 active, stopped;

	if (complete(st))
		return "complete";
	if (counter(st, "hydration_stopped_on_error", &stopped) && stopped)
		return "stopped on errors";
	if (counter(st, "hydration_active", &active))
		return active ? "running" : "stopped";
	return "unknown";
}

static void progress_bar(const struct cor_status *st, char *buf, size_t len)
{
	int fill = 0, i;

	if (st->total_regions)
		fill = (int)(st->hydrated * BAR_WIDTH / st->total_regions);
	if (fill > BAR_WIDTH)
		fill = BAR_WIDTH;
	if (len < BAR_WIDTH + 3)
		return;
	buf[0] = '[';
	for (i = 0; i < BAR_WIDTH; i++)
		buf[i + 1] = i < fill ? '#' : '-';
	buf[BAR_WIDTH + 1] = ']';
	buf[BAR_WIDTH + 2] = '\0';
}

static void rate_text(const struct rate *r, char *buf, size_t len)
{
	char b[32], e[32];

	if (!r || !r->known)
		snprintf(buf, len, "rate unknown");
	else
		snprintf(buf, len, "%s/s, ETA %s",
			 fmt_bytes((__u64)r->bytes_per_s, b, sizeof(b)),
			 fmt_duration(r->eta, e, sizeof(e)));
}

/* ------------------------------------------------------------------ */
/* status */

static void print_human(const struct dev *d, const struct cor_status *st,
			const struct rate *r)
{
	char b1[32], b2[32], bar[BAR_WIDTH + 3], rt[96];
	__u64 v;
	int i;

	printf("Device:       %s (%u:%u)%s%s\n", d->name, d->major, d->minor,
	       st->info.read_only ? ", read-only" : "",
	       st->info.suspended ? ", SUSPENDED" : "");
	progress_bar(st, bar, sizeof(bar));
	printf("Progress:     %s %.1f%%  %llu/%llu regions hydrated, %s of %s\n",
	       bar, percent(st), st->hydrated, st->total_regions,
	       fmt_bytes(hydrated_bytes(st), b1, sizeof(b1)),
	       fmt_bytes(st->length << SECTOR_SHIFT, b2, sizeof(b2)));
	if (complete(st)) {
		printf("Rate:         complete, nothing left to copy\n");
	} else {
		rate_text(r, rt, sizeof(rt));
		if (r && r->known)
			printf("Rate:         %s (over %.1f s)\n", rt, r->interval);
		else
			printf("Rate:         %s\n", rt);
	}
	printf("Mode:         %s%s\n", st->mode,
	       !strcmp(st->mode, "rw") ? "" :
	       !strcmp(st->mode, "ro") ? " (metadata error: no copies, no metadata updates)" :
	       " (metadata failure: every I/O fails)");
	printf("Hydration:    %s", hydration_state(st));
	if (!strcmp(hydration_state(st), "unknown"))
		printf(" (not reported by this module)");
	for (i = 0; i < st->nr_features; i++)
		if (!strcmp(st->features[i], "background_hydration"))
			printf(" (table has background_hydration)");
	printf("\n");
	printf("Hydrating:    %llu region%s in flight\n", st->hydrating,
	       st->hydrating == 1 ? "" : "s");
	if (counter(st, "prefetch_queued", &v))
		printf("Prefetch:     %llu region%s queued\n", v, v == 1 ? "" : "s");
	printf("Dirty:        %llu region%s (%s)\n", st->dirty, st->dirty == 1 ? "" : "s",
	       fmt_bytes(st->dirty * st->region_sectors << SECTOR_SHIFT, b1, sizeof(b1)));
	printf("Region size:  %llu sectors (%s)\n", st->region_sectors,
	       fmt_bytes(st->region_sectors << SECTOR_SHIFT, b1, sizeof(b1)));
	if (st->volatile_md)
		printf("Metadata:     volatile (in memory only)\n");
	else
		printf("Metadata:     %llu/%llu blocks of %s used (%.1f%%)\n",
		       st->md_used, st->md_total,
		       fmt_bytes(st->md_block_sectors << SECTOR_SHIFT, b1, sizeof(b1)),
		       st->md_total ? 100.0 * st->md_used / st->md_total : 0.0);
	printf("Features:     ");
	if (!st->nr_features)
		printf("none");
	for (i = 0; i < st->nr_features; i++)
		printf("%s%s", i ? " " : "", st->features[i]);
	printf("\nTunables:     ");
	if (!st->nr_core)
		printf("none");
	for (i = 0; i < st->nr_core; i++)
		printf("%s%s %s", i ? ", " : "", st->core[i].name, st->core[i].value);
	printf("\n");
	for (i = 0; i < st->nr_counters; i++)
		printf("%-13s %s %s\n", i ? "" : "Counters:", st->counters[i].name,
		       st->counters[i].value);
}

static void json_bool_counter(FILE *f, const struct cor_status *st, const char *name)
{
	__u64 v;

	if (counter(st, name, &v))
		fprintf(f, "%s", v ? "true" : "false");
	else
		fprintf(f, "null");
}

/* {"name": value, ...} */
static void json_pairs(FILE *f, const struct pair *pairs, int n)
{
	int i;

	fputc('{', f);
	for (i = 0; i < n; i++) {
		fprintf(f, "%s", i ? ", " : "");
		json_str(f, pairs[i].name);
		fprintf(f, ": ");
		json_word(f, pairs[i].value);
	}
	fputc('}', f);
}

static void print_json(const struct dev *d, const struct cor_status *st,
		       const struct rate *r)
{
	FILE *f = stdout;
	int i;

	fprintf(f, "{\"device\": ");
	json_str(f, d->name);
	fprintf(f, ", \"major\": %u, \"minor\": %u", d->major, d->minor);
	fprintf(f, ", \"event_nr\": %u, \"read_only\": %s, \"suspended\": %s",
		st->info.event_nr, st->info.read_only ? "true" : "false",
		st->info.suspended ? "true" : "false");
	fprintf(f, ", \"start\": %llu, \"length\": %llu", st->start, st->length);
	fprintf(f, ", \"metadata\": {\"volatile\": %s", st->volatile_md ? "true" : "false");
	if (st->volatile_md) {
		fprintf(f, ", \"block_sectors\": null, \"used_blocks\": null, ");
		fprintf(f, "\"total_blocks\": null");
	} else {
		fprintf(f,
			", \"block_sectors\": %llu, \"used_blocks\": %llu, \"total_blocks\": %llu",
			st->md_block_sectors, st->md_used, st->md_total);
	}
	fprintf(f, "}, \"region_sectors\": %llu", st->region_sectors);
	fprintf(f,
		", \"regions\": {\"total\": %llu, \"hydrated\": %llu, \"unhydrated\": %llu, \"hydrating\": %llu, \"dirty\": %llu}",
		st->total_regions, st->hydrated,
		complete(st) ? 0 : st->total_regions - st->hydrated,
		st->hydrating, st->dirty);
	fprintf(f,
		", \"progress\": {\"percent\": %.1f, \"hydrated_bytes\": %llu, \"total_bytes\": %llu, \"complete\": %s}",
		percent(st), hydrated_bytes(st), st->length << SECTOR_SHIFT,
		complete(st) ? "true" : "false");
	fprintf(f, ", \"mode\": ");
	json_str(f, st->mode);
	fprintf(f, ", \"hydration\": {\"state\": ");
	json_str(f, hydration_state(st));
	fprintf(f, ", \"active\": ");
	json_bool_counter(f, st, "hydration_active");
	fprintf(f, ", \"stopped_on_error\": ");
	json_bool_counter(f, st, "hydration_stopped_on_error");
	fprintf(f, "}, \"features\": [");
	for (i = 0; i < st->nr_features; i++) {
		fprintf(f, "%s", i ? ", " : "");
		json_str(f, st->features[i]);
	}
	fprintf(f, "], \"core_args\": ");
	json_pairs(f, st->core, st->nr_core);
	fprintf(f, ", \"counters\": ");
	json_pairs(f, st->counters, st->nr_counters);
	fprintf(f, ", \"rate\": ");
	if (r && r->known) {
		fprintf(f, "{\"interval\": %.3f, \"regions_per_second\": %.3f, ",
			r->interval, r->regions_per_s);
		fprintf(f, "\"bytes_per_second\": %.0f, \"eta_seconds\": ", r->bytes_per_s);
		if (r->eta >= 0)
			fprintf(f, "%.0f}", r->eta);
		else
			fprintf(f, "null}");
	} else if (complete(st)) {
		fprintf(f, "{\"interval\": 0, \"regions_per_second\": 0, ");
		fprintf(f, "\"bytes_per_second\": 0, \"eta_seconds\": 0}");
	} else {
		fprintf(f, "null");
	}
	fprintf(f, ", \"status_line\": ");
	json_str(f, st->line);
	fprintf(f, "}\n");
}

static void usage_status(FILE *f)
{
	fprintf(f,
		"usage: %s status [options] DEV\n"
		"Show the state of the cor device DEV: progress, rate and ETA, mode,\n"
		"hydration, dirty regions, counters and metadata usage.  The rate\n"
		"comes from two samples INTERVAL seconds apart (not taken when every\n"
		"region is hydrated).\n\n"
		"  -j, --json          print one JSON object (see corctl(8))\n"
		"  -1, --once          one sample only: \"rate unknown\", no delay\n"
		"  -i, --interval S    seconds between the two samples (default 1)\n"
		"  -h, --help          this help\n"
		"  -V, --version       print the version\n", prog);
}

/* After a usage error */
void hint(const char *cmd)
{
	fprintf(stderr, "Try '%s%s%s --help'.\n", prog, cmd ? " " : "", cmd ? cmd : "");
}

static void print_version(void)
{
	char lib[64] = "unknown";

	dm_get_library_version(lib, sizeof(lib));
	printf("corctl %s (dm-cor tools, libdevmapper %s)\n", COR_TOOLS_VERSION, lib);
}

/*
 * The options every command has, and what getopt_long() returns for an
 * unknown one: -h prints USAGE, -V the version, both exit 0; else a hint
 * and exit 2.  Returns the exit status.
 */
int common_option(int c, const char *cmd, usage_fn usage)
{
	switch (c) {
	case 'h':
		usage(stdout);
		return EXIT_OK;
	case 'V':
		print_version();
		return EXIT_OK;
	}
	hint(cmd);
	return EXIT_USAGE;
}

/* The single DEV operand of CMD, resolved into D */
static int one_dev(int argc, char **argv, const char *cmd, struct dev *d)
{
	if (argc - optind != 1) {
		err("%s: %s", cmd, argc == optind ? "DEV is missing" : "too many arguments");
		hint(cmd);
		return EXIT_USAGE;
	}
	return resolve_dev(argv[optind], d);
}

/* --interval S of CMD: 0.1 to 3600 seconds */
static bool opt_interval(const char *cmd, const char *arg, double *v)
{
	if (parse_seconds(arg, v) && *v >= 0.1 && *v <= 3600)
		return true;
	err("%s: --interval: '%s' is not 0.1 to 3600 seconds", cmd, arg);
	return false;
}

/* --timeout S of CMD */
static bool opt_timeout(const char *cmd, const char *arg, double *v)
{
	if (parse_seconds(arg, v))
		return true;
	err("%s: --timeout: '%s' is not a number of seconds", cmd, arg);
	return false;
}

static int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "once", no_argument, NULL, '1' },
		{ "no-wait", no_argument, NULL, '1' },
		{ "interval", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct cor_status st, st2;
	double interval = 1.0;
	struct rate rate;
	bool json = false, once = false;
	struct dev d;
	int c, r;

	while ((c = getopt_long(argc, argv, "j1i:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case '1':
			once = true;
			break;
		case 'i':
			if (!opt_interval("status", optarg, &interval))
				return EXIT_USAGE;
			break;
		default:
			return common_option(c, "status", usage_status);
		}
	}
	r = one_dev(argc, argv, "status", &d);
	if (r)
		return r;
	r = get_status(&d, &st);
	if (r)
		return r;
	memset(&rate, 0, sizeof(rate));
	rate_add(&rate, &st);
	if (!once && !complete(&st)) {
		sleep_for(interval);
		r = get_status(&d, &st2);
		if (r) {
			status_free(&st);
			return r;
		}
		status_free(&st);
		st = st2;
		rate_add(&rate, &st);
	}
	if (json)
		print_json(&d, &st, &rate);
	else
		print_human(&d, &st, &rate);
	status_free(&st);
	return fflush(stdout) ? EXIT_FAIL : EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* watch and wait */

struct mon_opts {
	bool wait;		/* wait: exit codes for scripts; watch: follow */
	bool quiet;
	double interval, timeout;	/* timeout 0: none */
};

static void show_progress(const struct dev *d, const struct cor_status *st,
			  const struct rate *r, bool tty, bool last)
{
	char b1[32], b2[32], bar[BAR_WIDTH + 3], rt[96];

	rate_text(r, rt, sizeof(rt));
	if (complete(st))
		snprintf(rt, sizeof(rt), "done");
	if (tty) {
		progress_bar(st, bar, sizeof(bar));
		/* \r and clear to the end of the line */
		printf("\r\033[K%s %5.1f%% %s/%s %s", bar, percent(st),
		       fmt_bytes(hydrated_bytes(st), b1, sizeof(b1)),
		       fmt_bytes(st->length << SECTOR_SHIFT, b2, sizeof(b2)), rt);
		if (strcmp(st->mode, "rw"))
			printf(" mode %s", st->mode);
		if (last)
			printf("\n");
	} else {
		printf("%s: %llu/%llu regions (%.1f%%), %s of %s, %s, ", d->name,
		       st->hydrated, st->total_regions, percent(st),
		       fmt_bytes(hydrated_bytes(st), b1, sizeof(b1)),
		       fmt_bytes(st->length << SECTOR_SHIFT, b2, sizeof(b2)), rt);
		printf("hydrating %llu, dirty %llu, mode %s, hydration %s\n", st->hydrating,
		       st->dirty, st->mode, hydration_state(st));
	}
	fflush(stdout);
}

static int monitor(const struct dev *d, const struct mon_opts *o)
{
	double deadline = o->timeout > 0 ? now() + o->timeout : 0, left, first;
	bool tty = isatty(STDOUT_FILENO), events = true, shown = false;
	__u64 last_h = UINT64_MAX, stopped;
	const char *last_mode = "", *last_state = "";
	char last_mode_buf[16] = "", last_state_buf[32] = "";
	struct cor_status st;
	struct rate rate;
	int r;

	memset(&rate, 0, sizeof(rate));
	setup_signals();
	for (;;) {
		r = get_status(d, &st);
		if (r)
			goto out;
		rate_add(&rate, &st);

		/* wait without a terminal: a line when something changes */
		if (!o->quiet && (tty || !o->wait || !shown || st.hydrated != last_h ||
				  strcmp(st.mode, last_mode) ||
				  strcmp(hydration_state(&st), last_state))) {
			show_progress(d, &st, &rate, tty, complete(&st) || strcmp(st.mode, "rw"));
			shown = true;
		}
		last_h = st.hydrated;
		snprintf(last_mode_buf, sizeof(last_mode_buf), "%s", st.mode);
		snprintf(last_state_buf, sizeof(last_state_buf), "%s", hydration_state(&st));
		last_mode = last_mode_buf;
		last_state = last_state_buf;

		if (complete(&st)) {
			r = EXIT_OK;
			break;
		}
		if (strcmp(st.mode, "rw")) {
			err("%s: device is in %s mode: hydration cannot complete", d->name,
			    st.mode);
			r = EXIT_FAIL;
			break;
		}
		if (counter(&st, "hydration_stopped_on_error", &stopped) && stopped) {
			if (tty && !o->quiet)
				printf("\n");
			err("%s: hydration stopped on errors (see the kernel log)", d->name);
			r = EXIT_FAIL;
			break;
		}
		if (got_signal) {
			if (tty && !o->quiet)
				printf("\n");
			r = o->wait ? EXIT_INTR : EXIT_OK;
			break;
		}
		left = deadline ? deadline - now() : 0;
		if (deadline && left <= 0) {
			if (tty && !o->quiet)
				printf("\n");
			err("%s: timed out after %g s: %llu/%llu regions hydrated",
			    d->name, o->timeout, st.hydrated, st.total_regions);
			r = EXIT_TIMEOUT;
			break;
		}
		first = o->interval;
		if (deadline && left < first)
			first = left;
		if (events) {
			/* an event (completion, mode change, stop) or the ticker */
			set_ticker(first, o->interval);
			events = wait_event(d, st.info.event_nr);
			set_ticker(0, 0);
		}
		if (!events)
			sleep_for(first);
		status_free(&st);
	}
	status_free(&st);
out:
	set_ticker(0, 0);
	return r;
}

static void usage_monitor(FILE *f, bool wait)
{
	if (wait)
		fprintf(f,
			"usage: %s wait [options] DEV\n"
			"Wait until every region of the cor device DEV is hydrated.  Exit 0 then,\n"
			"1 when the device is in ro or fail mode, background hydration stopped\n"
			"on errors or the device went away, 124 on timeout, 130 when\n"
			"interrupted.  Wakes on dm events (DM_DEVICE_WAITEVENT) and every\n"
			"INTERVAL seconds.  A progress bar on a terminal, else a line for\n"
			"each change.\n\n"
			"  -t, --timeout S     give up after S seconds (default: never)\n"
			"  -i, --interval S    progress update interval (default 1)\n"
			"  -q, --quiet         no progress output\n", prog);
	else
		fprintf(f,
			"usage: %s watch [options] DEV\n"
			"Show the hydration progress of the cor device DEV until every region\n"
			"is hydrated (exit 0), Ctrl-C (exit 0), the device enters ro or fail\n"
			"mode or hydration stops on errors (exit 1), or the timeout (exit 124).\n"
			"A progress bar on a terminal, else one line every INTERVAL seconds.\n\n"
			"  -i, --interval S    update interval (default 1)\n"
			"  -t, --timeout S     stop after S seconds (default: never)\n", prog);
	fprintf(f,
		"  -h, --help          this help\n"
		"  -V, --version       print the version\n");
}

static void usage_wait(FILE *f)
{
	usage_monitor(f, true);
}

static void usage_watch(FILE *f)
{
	usage_monitor(f, false);
}

static int cmd_monitor(int argc, char **argv, bool wait)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "interval", required_argument, NULL, 'i' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *cmd = wait ? "wait" : "watch";
	struct mon_opts o = { .wait = wait, .interval = 1.0 };
	struct dev d;
	int c, r;

	while ((c = getopt_long(argc, argv, "t:i:qhV", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (!opt_timeout(cmd, optarg, &o.timeout))
				return EXIT_USAGE;
			break;
		case 'i':
			if (!opt_interval(cmd, optarg, &o.interval))
				return EXIT_USAGE;
			break;
		case 'q':
			o.quiet = true;
			break;
		default:
			return common_option(c, cmd, wait ? usage_wait : usage_watch);
		}
	}
	r = one_dev(argc, argv, cmd, &d);
	if (r)
		return r;
	return monitor(&d, &o);
}

/* ------------------------------------------------------------------ */
/* prefetch */

struct range {
	__u64 start, len;	/* sectors */
};

struct ranges {
	struct range *r;
	size_t n, cap;
};

static int add_range(struct ranges *rs, __u64 start, __u64 len)
{
	struct range *n;

	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? 2 * rs->cap : 64;
		n = realloc(rs->r, rs->cap * sizeof(*n));
		if (!n) {
			err("out of memory");
			return EXIT_FAIL;
		}
		rs->r = n;
	}
	rs->r[rs->n].start = start;
	rs->r[rs->n++].len = len;
	return EXIT_OK;
}

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Sort and merge overlapping or adjacent ranges */
static void merge_ranges(struct ranges *rs)
{
	size_t i, o = 0;
	__u64 end;

	if (!rs->n)
		return;
	qsort(rs->r, rs->n, sizeof(rs->r[0]), cmp_range);
	for (i = 1; i < rs->n; i++) {
		end = rs->r[o].start + rs->r[o].len;
		if (rs->r[i].start <= end) {
			if (rs->r[i].start + rs->r[i].len > end)
				rs->r[o].len = rs->r[i].start + rs->r[i].len - rs->r[o].start;
		} else {
			rs->r[++o] = rs->r[i];
		}
	}
	rs->n = o + 1;
}

/*
 * The device sectors holding FILE's data, from FIEMAP.  Extents without a
 * known location (delayed allocation, inline data) and unwritten extents
 * (which read as zeroes without I/O) are skipped.
 */
static int file_ranges(const struct dev *d, const char *path, struct ranges *rs,
		       __u64 dev_len)
{
	const uint32_t skip = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC |
			      FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_UNWRITTEN;
	const unsigned int batch = 256;
	__u64 pos = 0, s, e, nr_ext = 0, nr_skipped = 0;
	struct fiemap *fm;
	struct stat st;
	bool last = false;
	unsigned int i;
	int fd, r = EXIT_FAIL;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err("prefetch: %s: %s", path, strerror(errno));
		return EXIT_FAIL;
	}
	if (fstat(fd, &st)) {
		err("prefetch: %s: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		err("prefetch: %s is not a regular file", path);
		goto out_close;
	}
	if (major(st.st_dev) != d->major || minor(st.st_dev) != d->minor) {
		err("prefetch: %s is on device %u:%u, not on %s (%u:%u); refusing",
		    path, major(st.st_dev), minor(st.st_dev), d->name, d->major, d->minor);
		goto out_close;
	}
	fm = calloc(1, sizeof(*fm) + batch * sizeof(struct fiemap_extent));
	if (!fm) {
		err("out of memory");
		goto out_close;
	}
	while (!last) {
		memset(fm, 0, sizeof(*fm));
		fm->fm_start = pos;
		fm->fm_length = FIEMAP_MAX_OFFSET - pos;
		fm->fm_flags = FIEMAP_FLAG_SYNC;
		fm->fm_extent_count = batch;
		if (ioctl(fd, FS_IOC_FIEMAP, fm)) {
			err("prefetch: %s: cannot map its extents (FIEMAP): %s", path,
			    strerror(errno));
			goto out_free;
		}
		if (!fm->fm_mapped_extents)
			break;
		for (i = 0; i < fm->fm_mapped_extents; i++) {
			struct fiemap_extent *x = &fm->fm_extents[i];

			if (x->fe_flags & FIEMAP_EXTENT_LAST)
				last = true;
			nr_ext++;
			if (x->fe_flags & skip || !x->fe_length) {
				nr_skipped++;
				continue;
			}
			s = x->fe_physical >> SECTOR_SHIFT;
			e = (x->fe_physical + x->fe_length + 511) >> SECTOR_SHIFT;
			if (e > dev_len) {
				err("prefetch: %s: extent at byte %llu is beyond the end of %s",
				    path, x->fe_physical, d->name);
				goto out_free;
			}
			if (add_range(rs, s, e - s))
				goto out_free;
		}
		pos = fm->fm_extents[fm->fm_mapped_extents - 1].fe_logical +
		      fm->fm_extents[fm->fm_mapped_extents - 1].fe_length;
	}
	if (verbose)
		fprintf(stderr, "%s: %s: %llu extents, %llu skipped\n", prog,
			path, nr_ext, nr_skipped);
	r = EXIT_OK;
out_free:
	free(fm);
out_close:
	close(fd);
	return r;
}

/* Is every region of [START, START + LEN) hydrated? */
static int range_hydrated(const struct dev *d, const struct cor_status *st,
			  const struct range *rg, bool *yes)
{
	__u64 first = rg->start / st->region_sectors;
	__u64 last = (rg->start + rg->len - 1) / st->region_sectors;
	char msg[96], want[64], *reply = NULL, *p, *q;
	int e;

	snprintf(msg, sizeof(msg), "bitmap hydrated %llu %llu", first,
		 last - first + 1);
	if (first == last)
		snprintf(want, sizeof(want), "%llu", first);
	else
		snprintf(want, sizeof(want), "%llu-%llu", first, last);
	if (send_message(d, msg, &reply, &e)) {
		err("%s: message '%s' failed: %s", d->name, msg, strerror(e));
		return EXIT_FAIL;
	}
	for (p = reply; isspace((unsigned char)*p); p++)
		;
	for (q = p + strlen(p); q > p && isspace((unsigned char)q[-1]); q--)
		;
	*q = '\0';
	*yes = !strcmp(p, want);
	free(reply);
	return EXIT_OK;
}

static int prefetch_wait(const struct dev *d, const struct ranges *rs, double timeout)
{
	double deadline = timeout > 0 ? now() + timeout : 0;
	struct cor_status st;
	size_t i = 0;
	bool yes;
	int r;

	setup_signals();
	for (;;) {
		r = get_status(d, &st);
		if (r)
			return r;
		for (; i < rs->n; i++) {
			r = range_hydrated(d, &st, &rs->r[i], &yes);
			if (r || !yes)
				break;
		}
		if (r || i == rs->n)
			break;
		if (strcmp(st.mode, "rw")) {
			err("%s: device is in %s mode: prefetch cannot complete", d->name, st.mode);
			r = EXIT_FAIL;
			break;
		}
		if (got_signal) {
			r = EXIT_INTR;
			break;
		}
		if (deadline && now() >= deadline) {
			err("%s: timed out after %g s waiting for the prefetched regions",
			    d->name, timeout);
			r = EXIT_TIMEOUT;
			break;
		}
		status_free(&st);
		sleep_for(0.2);
	}
	status_free(&st);
	return r;
}

static void usage_prefetch(FILE *f)
{
	fprintf(f,
		"usage: %s prefetch [options] DEV FILE|RANGE...\n"
		"Ask the cor device DEV to copy the regions that hold FILE or RANGE to\n"
		"the destination now (\"prefetch <start_sector> <nr_sectors>\" messages,\n"
		"one per merged range; the kernel copies in the background).\n\n"
		"RANGE is START+LEN or START-END (END not included).  Numbers are\n"
		"sectors, or bytes with a K, M, G or T suffix (powers of 1024,\n"
		"multiples of 512): 0+8, 1M+64K, 2048-4096, 1G-2G.\n"
		"FILE is a file on a filesystem mounted directly on DEV; its extents\n"
		"are found with FIEMAP.  An argument that is not range syntax is a\n"
		"file (write ./0+8 for a file named like a range).\n\n"
		"  -w, --wait          wait until every region of the ranges is hydrated\n"
		"  -t, --timeout S     with --wait: give up after S seconds (exit 124)\n"
		"  -n, --dry-run       print the ranges, send nothing\n"
		"  -q, --quiet         print nothing on success\n"
		"  -h, --help          this help\n"
		"  -V, --version       print the version\n", prog);
}

static int cmd_prefetch(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "wait", no_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	bool wait = false, dry = false, quiet = false;
	struct ranges rs = { 0 };
	__u64 start, len, sectors = 0;
	struct cor_status st;
	double timeout = 0;
	char why[160], msg[96];
	int c, r, i, e;
	struct dev d;
	size_t k;

	while ((c = getopt_long(argc, argv, "wt:nqhV", opts, NULL)) != -1) {
		switch (c) {
		case 'w':
			wait = true;
			break;
		case 't':
			if (!opt_timeout("prefetch", optarg, &timeout))
				return EXIT_USAGE;
			break;
		case 'n':
			dry = true;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			return common_option(c, "prefetch", usage_prefetch);
		}
	}
	if (argc - optind < 2) {
		err("prefetch: %s", argc == optind ? "DEV is missing" : "FILE or RANGE is missing");
		hint("prefetch");
		return EXIT_USAGE;
	}
	/* bad ranges are usage errors, found before any I/O */
	for (i = optind + 1; i < argc; i++) {
		if (parse_range(argv[i], &start, &len, why, sizeof(why))) {
			if (why[0]) {
				err("prefetch: %s", why);
				return EXIT_USAGE;
			}
		} else if (!strchr(argv[i], '/') && access(argv[i], F_OK) && errno == ENOENT) {
			err("prefetch: '%s' is neither a range (START+LEN, START-END) nor a file",
			    argv[i]);
			return EXIT_USAGE;
		}
	}
	r = resolve_dev(argv[optind], &d);
	if (r)
		return r;
	r = get_status(&d, &st);
	if (r)
		return r;
	for (i = optind + 1; i < argc && !r; i++) {
		if (!parse_range(argv[i], &start, &len, why, sizeof(why))) {
			r = file_ranges(&d, argv[i], &rs, st.length);
			continue;
		}
		if (start >= st.length || len > st.length - start) {
			err("prefetch: range '%s' (sectors %llu+%llu) is outside %s (%llu sectors)",
			    argv[i], start, len, d.name, st.length);
			r = EXIT_USAGE;
			break;
		}
		r = add_range(&rs, start, len);
	}
	if (r)
		goto out;
	merge_ranges(&rs);
	for (k = 0; k < rs.n; k++) {
		snprintf(msg, sizeof(msg), "prefetch %llu %llu", rs.r[k].start,
			 rs.r[k].len);
		sectors += rs.r[k].len;
		if (dry || verbose)
			printf("%s%s\n", dry ? "would send: " : "", msg);
		if (dry)
			continue;
		if (send_message(&d, msg, NULL, &e)) {
			if (e == EINVAL && !k)
				err("%s: '%s': EINVAL (no prefetch in the module?)",
				    d.name, msg);
			else
				err("%s: message '%s' failed: %s", d.name, msg, strerror(e));
			r = EXIT_FAIL;
			goto out;
		}
	}
	if (!quiet && !dry)
		printf("%s: prefetch of %zu range%s (%llu sectors) queued\n", d.name,
		       rs.n, rs.n == 1 ? "" : "s", sectors);
	if (wait && !dry && rs.n) {
		r = prefetch_wait(&d, &rs, timeout);
		if (!r && !quiet)
			printf("%s: every prefetched region is hydrated\n", d.name);
	}
out:
	free(rs.r);
	status_free(&st);
	return r;
}

/* ------------------------------------------------------------------ */
/* finalize */

int simple_task(int type, const struct dev *d, const char *what, bool cookie)
{
	struct dm_task *dmt;
	uint32_t ck = 0;
	bool have_cookie = false;
	int r = EXIT_OK;

	dm_last_error[0] = '\0';
	dmt = new_task(type, d->name);
	if (!dmt)
		return EXIT_FAIL;
	if (cookie && dm_task_set_cookie(dmt, &ck, 0))
		have_cookie = true;
	if (!dm_task_run(dmt)) {
		err("%s: %s failed: %s", d->name, what, task_error(dmt));
		r = EXIT_FAIL;
	}
	if (have_cookie)
		dm_udev_wait(ck);
	dm_task_destroy(dmt);
	return r;
}

/* The active table's single target: type and parameters (malloc'ed) */
int get_table(const struct dev *d, char **type, char **params, __u64 *len, int *nr)
{
	__u64 start;
	struct dm_task *dmt;
	char *ty = NULL, *pa = NULL;

	*nr = 0;
	*type = NULL;
	*params = NULL;
	dmt = new_task(DM_DEVICE_TABLE, d->name);
	if (!dmt)
		return EXIT_FAIL;
	if (!dm_task_run(dmt)) {
		err("%s: cannot read the table: %s", d->name, task_error(dmt));
		dm_task_destroy(dmt);
		return EXIT_FAIL;
	}
	*nr = first_target(dmt, &start, len, &ty, &pa);
	if (*nr) {
		*type = strdup(ty);
		*params = strdup(pa ? pa : "");
	}
	dm_task_destroy(dmt);
	if (*nr && (!*type || !*params)) {
		err("out of memory");
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* Why the device cannot be finalized, or NULL */
static const char *not_final(const struct cor_status *st, char *buf, size_t len)
{
	if (!complete(st)) {
		snprintf(buf, len, "hydration is incomplete: %llu/%llu regions hydrated (%.1f%%)",
			 st->hydrated, st->total_regions, percent(st));
		return buf;
	}
	if (strcmp(st->mode, "rw")) {
		snprintf(buf, len, "the device is in %s mode", st->mode);
		return buf;
	}
	return NULL;
}

static void usage_finalize(FILE *f)
{
	fprintf(f,
		"usage: %s finalize [options] DEV\n"
		"Replace the table of the cor device DEV, once every region is\n"
		"hydrated, by a linear table over its destination: suspend, check again\n"
		"while suspended (every region hydrated, mode rw), load \"linear DEST 0\"\n"
		"of the same length, resume.  If the check fails, the old table is\n"
		"resumed unchanged.  The origin and metadata devices are then free.\n\n"
		"  -n, --dry-run       check only, change nothing\n"
		"  -h, --help          this help\n"
		"  -V, --version       print the version\n", prog);
}

static int cmd_finalize(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	char *type = NULL, *params = NULL, dest[64], why[160], linear[96];
	unsigned int dmaj, dmin;
	struct cor_status st;
	struct dm_task *dmt;
	struct dm_info info;
	bool dry = false, have_st = false;
	__u64 len = 0;
	int c, r, nr;
	struct dev d;

	while ((c = getopt_long(argc, argv, "nhV", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			dry = true;
			break;
		default:
			return common_option(c, "finalize", usage_finalize);
		}
	}
	r = one_dev(argc, argv, "finalize", &d);
	if (r)
		return r;

	/* the table: one cor target; its destination */
	r = get_table(&d, &type, &params, &len, &nr);
	if (r)
		goto out;
	r = EXIT_FAIL;
	if (!nr) {
		err("finalize: %s has no active table", d.name);
		goto out;
	}
	if (nr > 1 || strcmp(type, "cor")) {
		err("finalize: %s is not a cor device (%s); refusing", d.name,
		    nr > 1 ? "several targets" : type);
		goto out;
	}
	if (sscanf(params, "%*s %63s", dest) != 1 || sscanf(dest, "%u:%u", &dmaj, &dmin) != 2) {
		err("finalize: %s: cannot find the destination in the table '%s'", d.name,
		    params);
		goto out;
	}
	r = get_status(&d, &st);
	if (r)
		goto out;
	have_st = true;
	r = EXIT_FAIL;
	if (st.info.suspended) {
		err("finalize: %s is suspended; resume it first", d.name);
		goto out;
	}
	if (st.info.inactive_table) {
		err("finalize: %s has an inactive table loaded (dmsetup clear it first)", d.name);
		goto out;
	}
	if (st.length != len) {
		err("finalize: %s: the table changed while reading it", d.name);
		goto out;
	}
	if (not_final(&st, why, sizeof(why))) {
		err("finalize: %s: refusing: %s", d.name, why);
		goto out;
	}
	snprintf(linear, sizeof(linear), "%u:%u 0", dmaj, dmin);
	if (dry) {
		printf("%s: can be finalized: would load \"0 %llu linear %s\"\n",
		       d.name, len, linear);
		r = EXIT_OK;
		goto out;
	}
	status_free(&st);
	have_st = false;

	/* suspend (flushing: the cor target commits its metadata) */
	if (simple_task(DM_DEVICE_SUSPEND, &d, "suspend", false))
		goto out;
	if (get_status(&d, &st)) {
		simple_task(DM_DEVICE_RESUME, &d, "resume", true);
		goto out;
	}
	have_st = true;
	if (not_final(&st, why, sizeof(why)) || st.length != len) {
		if (!not_final(&st, why, sizeof(why)))
			snprintf(why, sizeof(why), "the table changed");
		err("finalize: %s: refusing (checked while suspended): %s", d.name, why);
		err("finalize: %s: resuming the cor table unchanged", d.name);
		simple_task(DM_DEVICE_RESUME, &d, "resume", true);
		goto out;
	}

	/* load the linear table */
	dm_last_error[0] = '\0';
	dmt = new_task(DM_DEVICE_RELOAD, d.name);
	if (!dmt) {
		simple_task(DM_DEVICE_RESUME, &d, "resume", true);
		goto out;
	}
	if ((st.info.read_only && !dm_task_set_ro(dmt)) ||
	    !dm_task_add_target(dmt, 0, len, "linear", linear) || !dm_task_run(dmt)) {
		err("finalize: %s: loading \"0 %llu linear %s\" failed: %s", d.name,
		    len, linear, task_error(dmt));
		err("finalize: %s: resuming the cor table unchanged", d.name);
		dm_task_destroy(dmt);
		simple_task(DM_DEVICE_RESUME, &d, "resume", true);
		goto out;
	}
	dm_task_destroy(dmt);

	/* resume: the linear table goes live, the cor table is destroyed */
	if (simple_task(DM_DEVICE_RESUME, &d, "resume with the linear table", true)) {
		/* drop the linear table and bring the cor table back */
		simple_task(DM_DEVICE_CLEAR, &d, "clearing the inactive table", false);
		if (!simple_task(DM_DEVICE_RESUME, &d, "resume", true))
			err("finalize: %s: the cor table was resumed unchanged", d.name);
		goto out;
	}

	/* check */
	free(type);
	free(params);
	if (get_table(&d, &type, &params, &len, &nr))
		goto out;
	dmt = new_task(DM_DEVICE_INFO, d.name);
	if (dmt && dm_task_run(dmt) && dm_task_get_info(dmt, &info) && info.suspended)
		err("finalize: %s: warning: the device is still suspended", d.name);
	if (dmt)
		dm_task_destroy(dmt);
	if (nr != 1 || strcmp(type, "linear")) {
		err("finalize: %s: the live table is not the linear one after resume", d.name);
		goto out;
	}
	printf("%s: finalized: table \"0 %llu linear %s\"\n", d.name, len, linear);
	printf("%s: the origin and metadata devices are released\n", d.name);
	r = EXIT_OK;
out:
	if (have_st)
		status_free(&st);
	free(type);
	free(params);
	return r;
}

/* ------------------------------------------------------------------ */
/* main */

static void print_usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-v] COMMAND [options] DEV [args]\n"
		"Operator front end for dm-cor (copy-on-read) devices.\n\n"
		"Commands:\n"
		"  status DEV [--json] [--once]     progress, rate and ETA, mode, counters\n"
		"  watch DEV [--interval S]         show progress until complete\n"
		"  wait DEV [--timeout S]           wait until every region is hydrated\n"
		"  prefetch DEV FILE|RANGE...       copy these regions now\n"
		"  finalize DEV [--dry-run]         switch a hydrated device to linear\n"
		"  create NAME ORIGIN DEST METADATA check the devices, create a device\n"
		"  activate [NAME...]               create the devices of /etc/cortab\n"
		"  deactivate [NAME...]             remove them\n"
		"  metadata-size --size S --region-size R   the metadata size needed\n\n"
		"DEV is a dm name, /dev/mapper/NAME, /dev/dm-N or MAJOR:MINOR.\n"
		"\"%s COMMAND --help\" describes a command.\n\n"
		"Options:\n"
		"  -v, --verbose       more messages (twice: libdevmapper's too)\n"
		"  -h, --help          this help\n"
		"  -V, --version       print the version\n\n"
		"Exit status: 0 success, 1 failure or refusal, 2 bad arguments,\n"
		"124 timeout, 130 interrupted.\n", prog, prog);
}

static int cmd_wait(int argc, char **argv)
{
	return cmd_monitor(argc, argv, true);
}

static int cmd_watch(int argc, char **argv)
{
	return cmd_monitor(argc, argv, false);
}

/* The commands, in the order of the usage text */
static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {
	{ "status", cmd_status },
	{ "watch", cmd_watch },
	{ "wait", cmd_wait },
	{ "prefetch", cmd_prefetch },
	{ "finalize", cmd_finalize },
	{ "create", cmd_create },
	{ "activate", cmd_activate },
	{ "deactivate", cmd_deactivate },
	{ "metadata-size", cmd_metadata_size },
};

int main(int argc, char **argv)
{
	static char cmd_name[64];
	static const struct option opts[] = {
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *cmd;
	unsigned int i;
	int c, r;

	cor_prog = prog;
	argv[0] = (char *)prog;	/* for getopt's messages */
	while ((c = getopt_long(argc, argv, "+vhV", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			verbose++;
			break;
		default:
			return common_option(c, NULL, print_usage);
		}
	}
	if (optind >= argc) {
		err("a command is missing");
		hint(NULL);
		return EXIT_USAGE;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	/* getopt's messages name the command */
	snprintf(cmd_name, sizeof(cmd_name), "%s %s", prog, cmd);
	argv[0] = cmd_name;
	optind = 0;	/* restart getopt for the command's options */

	dm_log_with_errno_init(dm_logger);
	/* no udev (DM_DISABLE_UDEV, no udevd): do not wait for it */
	if (getenv("DM_DISABLE_UDEV") || access("/run/udev/control", F_OK))
		dm_udev_set_sync_support(0);

	for (i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(cmd, commands[i].name))
			break;
	if (i < ARRAY_SIZE(commands)) {
		r = commands[i].run(argc, argv);
	} else if (!strcmp(cmd, "help")) {
		print_usage(stdout);
		r = EXIT_OK;
	} else {
		err("unknown command '%s'", cmd);
		hint(NULL);
		r = EXIT_USAGE;
	}
	dm_lib_release();
	return r;
}
