// SPDX-License-Identifier: GPL-2.0-only
/*
 * cortab: the parser of /etc/cortab, shared by corctl and
 * dm-cor-generator (see cortab.h and cortab(5)).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cor-meta.h"
#include "cortab.h"

/* ------------------------------------------------------------------ */
/* Fields */

bool cortab_valid_name(const char *name)
{
	size_t len = strlen(name);
	const char *p;

	if (!len || len > CORTAB_NAME_MAX || !strcmp(name, ".") || !strcmp(name, "..") ||
	    !strcmp(name, "control"))
		return false;
	/* what a systemd unit name and a shell take unescaped */
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_.-", *p))
			return false;
	return name[0] != '-';
}

/*
 * Devices are absolute paths.  UUID=, LABEL= and the like are refused:
 * the origin, the destination and the cor device carry the same
 * filesystem (and PV) identity, so such a tag would resolve to any of
 * them.
 */
static const char *device_error(const char *what, const char *field, char *why, size_t len)
{
	if (field[0] == '/')
		return NULL;
	if (strchr(field, '='))
		snprintf(why, len, "%s '%s': tags such as UUID= and LABEL= are refused (%s)", what,
			 field, "origin, destination and cor device share them: use a path");
	else
		snprintf(why, len, "%s '%s' is not an absolute path", what, field);
	return why;
}

/* A count option: a positive decimal number */
static const char *count_value(const char *key, const char *val, __u64 *out, char *why,
			       size_t len)
{
	if (!val || cor_parse_u64(val, out) || !*out || *out > UINT32_MAX) {
		snprintf(why, len, "option '%s' needs a count from 1 to %u", key, UINT32_MAX);
		return why;
	}
	return NULL;
}

struct flag_option {
	const char *key;
	size_t offset;		/* of the bool in struct cortab_options */
};

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define FLAG(k, member)	{ k, offsetof(struct cortab_options, member) }

static const struct flag_option flag_options[] = {
	FLAG("hydrate", hydrate),
	FLAG("no-discard-passdown", no_discard_passdown),
	FLAG("read-only", read_only),
	FLAG("format", format),
	FLAG("noauto", noauto),
	FLAG("nofail", nofail),
	FLAG("_netdev", netdev),
	FLAG("initramfs", initramfs),
};

static const char *one_option(char *word, struct cortab_options *opt, char *why, size_t len)
{
	char *val = strchr(word, '=');
	unsigned int i;

	if (val)
		*val++ = '\0';
	/* "x-..." options belong to other programs (as in fstab) */
	if (!strncmp(word, "x-", 2))
		return NULL;
	for (i = 0; i < ARRAY_SIZE(flag_options); i++) {
		if (strcmp(word, flag_options[i].key))
			continue;
		if (val) {
			snprintf(why, len, "option '%s' takes no value", word);
			return why;
		}
		*(bool *)((char *)opt + flag_options[i].offset) = true;
		return NULL;
	}
	if (!strcmp(word, "region-size")) {
		if (!val || cor_parse_size(val, &opt->region_sectors, NULL) ||
		    opt->region_sectors < 8 || opt->region_sectors > 2097152 ||
		    (opt->region_sectors & (opt->region_sectors - 1))) {
			snprintf(why, len, "region-size '%s' is not a power of two from 4k to 1g",
				 val ? val : "");
			return why;
		}
		return NULL;
	}
	if (!strcmp(word, "hydration-threshold"))
		return count_value(word, val, &opt->hydration_threshold, why, len);
	if (!strcmp(word, "hydration-batch-size"))
		return count_value(word, val, &opt->hydration_batch_size, why, len);
	snprintf(why, len, "unknown option '%s'", word);
	return why;
}

/* Parse one OPTIONS field into @opt: NULL, or why it is wrong */
static const char *parse_options(const char *field, struct cortab_options *opt, char *why,
				 size_t len)
{
	char *copy, *word, *save = NULL;
	const char *bad = NULL;

	memset(opt, 0, sizeof(*opt));
	if (!strcmp(field, "-"))
		return NULL;
	copy = strdup(field);
	if (!copy)
		return "out of memory";
	if (field[0] == ',' || strstr(field, ",,") || field[strlen(field) - 1] == ',')
		bad = "an empty option (two commas in a row?)";
	for (word = strtok_r(copy, ",", &save); word && !bad;
	     word = strtok_r(NULL, ",", &save))
		bad = one_option(word, opt, why, len);
	free(copy);
	return bad;
}

/* ------------------------------------------------------------------ */
/* Lines */

static const char out_of_memory[] = "out of memory";

static void set_error(struct cortab_entry *e, const char *fmt, const char *arg)
{
	char buf[CORTAB_LINE_MAX];

	if (e->error)
		return;
	snprintf(buf, sizeof(buf), fmt, arg);
	e->error = strdup(buf);
	if (!e->error)
		e->error = out_of_memory;
}

/* Split @line into fields; returns their number (at most @max + 1) */
static unsigned int split(char *line, char **fields, unsigned int max)
{
	unsigned int n = 0;
	char *save = NULL, *w;

	for (w = strtok_r(line, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
		if (n == max)
			return max + 1;
		fields[n++] = w;
	}
	return n;
}

static void parse_line(struct cortab_entry *e, char *line)
{
	static const char *const what[] = { "name", "origin", "destination", "metadata" };
	char why[CORTAB_LINE_MAX / 2];
	char *f[5] = { NULL };
	const char *bad;
	unsigned int n, i;

	n = split(line, f, 5);
	if (n > 5) {
		set_error(e, "%s", "too many fields (NAME ORIGIN DESTINATION METADATA [OPTIONS])");
		n = 5;
	} else if (n < 4) {
		set_error(e, "only %s of NAME ORIGIN DESTINATION METADATA [OPTIONS]",
			  n == 1 ? "NAME" : n == 2 ? "NAME ORIGIN" : "NAME ORIGIN DESTINATION");
	}
	e->name = strdup(f[0]);
	e->origin = strdup(n > 1 ? f[1] : "");
	e->dest = strdup(n > 2 ? f[2] : "");
	e->metadata = strdup(n > 3 ? f[3] : "");
	e->options = strdup(n > 4 ? f[4] : "-");
	if (!e->name || !e->origin || !e->dest || !e->metadata || !e->options) {
		set_error(e, "%s", "out of memory");
		return;
	}
	if (!cortab_valid_name(e->name))
		set_error(e, "name '%s': use 1 to 127 of A-Z a-z 0-9 _ . - (not starting with -)",
			  e->name);
	for (i = 1; i < n && i < 4 && !e->error; i++) {
		if (i == 3 && !strcmp(f[i], "-"))
			continue;
		bad = device_error(what[i], f[i], why, sizeof(why));
		if (bad)
			set_error(e, "%s", bad);
	}
	if (e->error)
		return;
	bad = parse_options(e->options, &e->opt, why, sizeof(why));
	if (bad)
		set_error(e, "%s", bad);
	else if (!strcmp(e->metadata, "-") && !e->opt.read_only)
		set_error(e, "%s", "volatile metadata (\"-\") needs the read-only option");
	else if (!strcmp(e->metadata, "-") && e->opt.format)
		set_error(e, "%s", "volatile metadata (\"-\") cannot be formatted");
	else if (!strcmp(e->origin, e->dest) || !strcmp(e->origin, e->metadata) ||
		 !strcmp(e->dest, e->metadata))
		set_error(e, "%s", "origin, destination and metadata must be three devices");
}

/* Two lines must not write one device */
static bool shares_device(const struct cortab_entry *a, const struct cortab_entry *b)
{
	if (!b->dest[0])
		return false;
	if (!strcmp(a->dest, b->dest))
		return true;
	return strcmp(b->metadata, "-") && !strcmp(a->metadata, b->metadata);
}

int cortab_read(struct cortab *tab, const char *path, bool missing_ok)
{
	static const char shared[] = "shares a destination or metadata device with another line";
	char line[CORTAB_LINE_MAX + 2];
	struct cortab_entry *e, *grown;
	unsigned int lineno = 0, i, j;
	size_t len;
	char *p;
	FILE *f;

	memset(tab, 0, sizeof(*tab));
	tab->path = path;
	f = fopen(path, "re");
	if (!f)
		return missing_ok && errno == ENOENT ? 0 : -1;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		len = strlen(line);
		for (p = line; *p == ' ' || *p == '\t'; p++)
			;
		if (*p == '#' || *p == '\n' || *p == '\r' || !*p)
			continue;
		grown = realloc(tab->entries, (tab->nr_entries + 1) * sizeof(*e));
		if (!grown) {
			fclose(f);
			cortab_free(tab);
			errno = ENOMEM;
			return -1;
		}
		tab->entries = grown;
		e = &tab->entries[tab->nr_entries++];
		memset(e, 0, sizeof(*e));
		e->line = lineno;
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			int c;

			/* skip the rest of the line */
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			set_error(e, "longer than %s characters", "4096");
		}
		parse_line(e, p);
	}
	if (ferror(f)) {
		fclose(f);
		cortab_free(tab);
		errno = EIO;
		return -1;
	}
	fclose(f);

	/* a name or a device may appear once */
	for (i = 0; i < tab->nr_entries; i++) {
		for (j = 0; j < i; j++) {
			struct cortab_entry *a = &tab->entries[j], *b = &tab->entries[i];

			if (!strcmp(a->name, b->name)) {
				set_error(b, "name '%s' is used twice", b->name);
				set_error(a, "name '%s' is used twice", a->name);
			} else if (shares_device(a, b)) {
				set_error(b, "%s", shared);
				set_error(a, "%s", shared);
			}
		}
	}
	for (i = 0; i < tab->nr_entries; i++)
		tab->nr_errors += !!tab->entries[i].error;
	return 0;
}

void cortab_free(struct cortab *tab)
{
	unsigned int i;

	for (i = 0; i < tab->nr_entries; i++) {
		struct cortab_entry *e = &tab->entries[i];

		free(e->name);
		free(e->origin);
		free(e->dest);
		free(e->metadata);
		free(e->options);
		if (e->error != out_of_memory)
			free((char *)e->error);
	}
	free(tab->entries);
	memset(tab, 0, sizeof(*tab));
}

struct cortab_entry *cortab_find(struct cortab *tab, const char *name)
{
	unsigned int i;

	for (i = 0; i < tab->nr_entries; i++)
		if (!strcmp(tab->entries[i].name, name))
			return &tab->entries[i];
	return NULL;
}
