/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cortab: the parser of /etc/cortab (cortab(5)), shared by corctl
 * (activate, deactivate) and dm-cor-generator, so that both read every
 * line the same way.  One device a line:
 *
 *   NAME  ORIGIN  DESTINATION  METADATA  [OPTIONS]
 *
 * Devices are absolute paths; METADATA may be "-" (volatile, read-only
 * only).  OPTIONS is "-" or a comma-separated list (cortab(5)).  A line
 * that does not parse is kept with its reason, so that callers can report
 * it and still use the other lines.
 */
#ifndef COR_CORTAB_H
#define COR_CORTAB_H

#include <stdbool.h>
#include <stdio.h>
#include <linux/types.h>

#define CORTAB_PATH		"/etc/cortab"
#define CORTAB_NAME_MAX		127	/* DM_NAME_LEN - 1 */
#define CORTAB_LINE_MAX		4096

/* What an entry asks for; the defaults are those of the kernel */
struct cortab_options {
	__u64 region_sectors;		/* 0: not given */
	__u64 hydration_threshold;	/* 0: not given */
	__u64 hydration_batch_size;	/* 0: not given */
	bool hydrate;			/* background_hydration */
	bool no_discard_passdown;
	bool read_only;
	bool format;			/* may format blank metadata */
	bool noauto;			/* not activated without its name */
	bool nofail;			/* boot goes on when it fails */
	bool netdev;			/* _netdev: the origin needs the network */
	bool initramfs;			/* activated in the initramfs too */
};

struct cortab_entry {
	unsigned int line;		/* 1-based line number */
	char *name;
	char *origin;
	char *dest;
	char *metadata;			/* "-": volatile */
	char *options;			/* as written, "-" when none */
	struct cortab_options opt;
	const char *error;		/* NULL when the line is valid */
};

struct cortab {
	const char *path;
	struct cortab_entry *entries;
	unsigned int nr_entries;
	unsigned int nr_errors;		/* entries with an error */
};

/*
 * Read @path into @tab.  Returns 0, or -1 when the file cannot be read
 * (errno set; a missing file is an empty table when @missing_ok).  Bad
 * lines do not fail the read: they are entries with ->error set.
 */
int cortab_read(struct cortab *tab, const char *path, bool missing_ok);
void cortab_free(struct cortab *tab);

/* The entry named @name, or NULL */
struct cortab_entry *cortab_find(struct cortab *tab, const char *name);

/* Whether @name is a name device-mapper and the generator accept */
bool cortab_valid_name(const char *name);

#endif /* COR_CORTAB_H */
