/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * corctl: what the files of the operator front end share.  corctl.c has
 * the messages, the device-mapper helpers, the monitoring commands and
 * main(); corctl-setup.c the commands that set devices up (create,
 * activate, deactivate, metadata-size).
 */
#ifndef COR_CORCTL_H
#define COR_CORCTL_H

#define __SANE_USERSPACE_TYPES__	/* __u64 is unsigned long long everywhere */
#include <libdevmapper.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <linux/types.h>

#include "cor-meta.h"	/* cor_printf() */

#ifndef DM_NAME_LEN
#define DM_NAME_LEN	128
#endif

#define EXIT_OK		0
#define EXIT_FAIL	1
#define EXIT_USAGE	2
#define EXIT_TIMEOUT	124
#define EXIT_INTR	130

#define SECTOR_SHIFT	9

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

extern const char *prog;
extern int verbose;

/* "corctl: message" on stderr */
void err(const char *fmt, ...) cor_printf(1, 2);
/* "Try 'corctl CMD --help'." after a usage error */
void hint(const char *cmd);

typedef void (*usage_fn)(FILE *f);
/*
 * What getopt_long() returned that the command does not handle: -h prints
 * @usage, -V the version (exit status 0), anything else a hint (2).
 */
int common_option(int c, const char *cmd, usage_fn usage);

/* A dm device, found by resolve_dev() */
struct dev {
	char name[DM_NAME_LEN];
	uint32_t major, minor;
	bool read_only;
};

/* libdevmapper's last error message, cleared before a task that may fail */
extern char dm_last_error[512];

/* dm_task_create() + name (NULL: none), or NULL with a message */
struct dm_task *new_task(int type, const char *name);
/* errno text of a failed task, with libdevmapper's last message */
const char *task_error(struct dm_task *dmt);
/* A dm name, /dev/mapper/NAME, /dev/dm-N or MAJOR:MINOR */
int resolve_dev(const char *arg, struct dev *d);
/* Run a task of @type on @d (suspend, resume, remove...); @cookie: wait for udev */
int simple_task(int type, const struct dev *d, const char *what, bool cookie);
/* The live table's first target and the number of targets (malloc'ed strings) */
int get_table(const struct dev *d, char **type, char **params, __u64 *len, int *nr);

/* The commands of corctl-setup.c */
int cmd_create(int argc, char **argv);
int cmd_activate(int argc, char **argv);
int cmd_deactivate(int argc, char **argv);
int cmd_metadata_size(int argc, char **argv);

#endif /* COR_CORCTL_H */
