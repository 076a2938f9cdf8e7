// SPDX-License-Identifier: GPL-2.0-only
/*
 * corctl: the commands that set dm-cor devices up.
 *
 *   corctl create NAME ORIGIN DEST METADATA [--region-size SIZE] [--format] ...
 *   corctl activate [--cortab FILE] [--initramfs] [NAME...]
 *   corctl deactivate [--cortab FILE] [NAME...]
 *   corctl metadata-size --size SIZE --region-size SIZE [-n] [-u UNIT]
 *
 * create and activate share one path (setup_device()): every device is
 * checked (a block device, large enough, not in use by anything that could
 * write it behind the cor device's back), the metadata is read and must
 * be either valid for this geometry (re-attached) or blank and allowed to
 * be formatted; only then is the table loaded, and when the kernel refuses
 * it its own reason is read back from the kernel log.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/fs.h>

#include "corctl.h"
#include "cor-meta.h"
#include "cortab.h"

#define DEFAULT_REGION_SECTORS	128	/* 64 KiB */
#define KMSG_LINE_MAX		1024

/* ------------------------------------------------------------------ */
/* Block devices */

struct blockdev {
	const char *what;	/* "origin", "destination", "metadata" */
	const char *path;
	dev_t rdev;
	char sysname[NAME_MAX + 1];	/* vdb, dm-3, nvme0n1p2 */
	__u64 sectors;
	bool read_only;		/* the block device's own ro flag */
};

static int read_sysfs(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return 0;
}

static int open_blockdev(struct blockdev *b, const char *what, const char *path)
{
	char link[PATH_MAX], target[PATH_MAX];
	struct stat st;
	ssize_t n;
	int fd, ro = 0;
	char *base;

	memset(b, 0, sizeof(*b));
	b->what = what;
	b->path = path;
	if (stat(path, &st)) {
		err("%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (!S_ISBLK(st.st_mode)) {
		err("%s %s is not a block device", what, path);
		return -1;
	}
	b->rdev = st.st_rdev;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err("%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (ioctl(fd, BLKGETSIZE64, &b->sectors)) {
		err("%s %s: cannot get its size: %s", what, path, strerror(errno));
		close(fd);
		return -1;
	}
	b->sectors >>= SECTOR_SHIFT;
	if (!ioctl(fd, BLKROGET, &ro))
		b->read_only = ro;
	close(fd);
	snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(b->rdev), minor(b->rdev));
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0) {
		err("%s %s: %s: %s", what, path, link, strerror(errno));
		return -1;
	}
	target[n] = '\0';
	base = strrchr(target, '/');
	snprintf(b->sysname, sizeof(b->sysname), "%.255s", base ? base + 1 : target);
	return 0;
}

static const char *fmt_sectors(__u64 sectors, char *buf, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = sectors / 2.0;
	unsigned int u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%llu sectors (%.1f %s)", sectors, v, units[u]);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Who else uses a device */

/*
 * Device-mapper opens every device of a table with one holder, so the
 * kernel cannot refuse a cor table over an origin that an active LV (or
 * any other dm device) still maps writably: the exclusive open succeeds.
 * What holds a device is in sysfs; dm holders are told apart by their
 * tables.
 */
enum holder_use {
	HOLDER_READS,		/* a read-only device, or a cor device using it as origin */
	HOLDER_WRITES,
};

struct holder {
	char sysname[NAME_MAX + 1];
	char name[NAME_MAX + 1];	/* dm name, or the sysname */
	char table[96];		/* "linear", "cor (as its origin)", ... */
	enum holder_use use;
};

typedef int (*holder_fn_t)(void *ctx, const struct holder *h);

/*
 * Whether word @n (0-based) of a table's parameters is the device @rdev:
 * a cor table's origin (0) and destination (1), a linear table's device (0)
 */
static bool table_dev_is(const char *params, unsigned int n, dev_t rdev)
{
	char word[PATH_MAX];
	unsigned int ma, mi, i;
	struct stat st;
	int len;

	for (i = 0; i <= n; i++) {
		if (sscanf(params, "%4095s%n", word, &len) != 1)
			return false;
		params += len;
	}
	if (sscanf(word, "%u:%u", &ma, &mi) == 2)
		return makedev(ma, mi) == rdev;
	return !stat(word, &st) && S_ISBLK(st.st_mode) && st.st_rdev == rdev;
}

static bool first_dev_is(const char *params, dev_t rdev)
{
	return table_dev_is(params, 0, rdev);
}

static void describe_holder(const char *sysname, dev_t held, struct holder *h)
{
	char path[PATH_MAX], buf[64];
	unsigned int ma, mi;
	struct dm_task *dmt;
	uint64_t start, length;
	char *type = NULL, *params = NULL;
	void *next = NULL;
	bool ro = false, all_cor_origin = true;
	int nr = 0;

	memset(h, 0, sizeof(*h));
	snprintf(h->sysname, sizeof(h->sysname), "%s", sysname);
	snprintf(h->name, sizeof(h->name), "%s", sysname);
	snprintf(h->table, sizeof(h->table), "not a device-mapper device");
	h->use = HOLDER_WRITES;
	snprintf(path, sizeof(path), "/sys/class/block/%s/ro", sysname);
	if (!read_sysfs(path, buf, sizeof(buf)))
		ro = !strcmp(buf, "1");
	snprintf(path, sizeof(path), "/sys/class/block/%s/dm/name", sysname);
	if (read_sysfs(path, h->name, sizeof(h->name))) {
		snprintf(h->name, sizeof(h->name), "%s", sysname);
		if (ro)
			h->use = HOLDER_READS;
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/block/%s/dev", sysname);
	if (read_sysfs(path, buf, sizeof(buf)) || sscanf(buf, "%u:%u", &ma, &mi) != 2)
		return;
	dmt = new_task(DM_DEVICE_TABLE, NULL);
	if (!dmt)
		return;
	h->table[0] = '\0';
	if (dm_task_set_major(dmt, ma) && dm_task_set_minor(dmt, mi) && dm_task_run(dmt)) {
		do {
			next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
			if (!type)
				break;
			nr++;
			if (strcmp(type, "cor") || !first_dev_is(params ? params : "", held))
				all_cor_origin = false;
			if (nr == 1)
				snprintf(h->table, sizeof(h->table), "%s", type);
		} while (next);
	}
	dm_task_destroy(dmt);
	if (!nr) {
		snprintf(h->table, sizeof(h->table), "no table");
		all_cor_origin = false;
	} else if (nr > 1) {
		size_t l = strlen(h->table);

		snprintf(h->table + l, sizeof(h->table) - l, " and %d more targets", nr - 1);
	}
	if (all_cor_origin) {
		snprintf(h->table, sizeof(h->table), "cor, using it as its origin");
		h->use = HOLDER_READS;
	} else if (ro) {
		h->use = HOLDER_READS;
	}
}

/* Call @fn for each holder of the device @sysname and of its partitions */
static int walk_holders(const char *sysname, dev_t held, holder_fn_t fn, void *ctx)
{
	char path[PATH_MAX], part[PATH_MAX + NAME_MAX + 16];
	struct holder h;
	struct dirent *de;
	struct stat st;
	DIR *d;
	int r = 0;

	snprintf(path, sizeof(path), "/sys/class/block/%s/holders", sysname);
	d = opendir(path);
	if (d) {
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			describe_holder(de->d_name, held, &h);
			r = fn(ctx, &h);
			if (r) {
				closedir(d);
				return r;
			}
		}
		closedir(d);
	}
	/* partitions: /sys/class/block/vdb/vdb1/partition */
	snprintf(path, sizeof(path), "/sys/class/block/%s", sysname);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, sysname, strlen(sysname)))
			continue;
		snprintf(part, sizeof(part), "%s/%s/partition", path, de->d_name);
		if (stat(part, &st))
			continue;
		r = walk_holders(de->d_name, held, fn, ctx);
		if (r)
			break;
	}
	closedir(d);
	return r;
}

/* The mount point of the device @rdev or of one of its partitions, or "" */
static void mount_point(const struct blockdev *b, char *buf, size_t len)
{
	char line[4096], mnt[PATH_MAX], sys[PATH_MAX], *p;
	unsigned int ma, mi;
	FILE *f;

	buf[0] = '\0';
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &ma, &mi, mnt) != 3)
			continue;
		if (makedev(ma, mi) != b->rdev) {
			/* a partition of it? /sys/dev/block/MA:MI/../dev */
			snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/partition", ma, mi);
			if (access(sys, F_OK))
				continue;
			snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/../dev", ma, mi);
			if (read_sysfs(sys, line, sizeof(line)))
				continue;
			p = line;
			if (sscanf(p, "%u:%u", &ma, &mi) != 2 || makedev(ma, mi) != b->rdev)
				continue;
		}
		snprintf(buf, len, "%s", mnt);
		break;
	}
	fclose(f);
}

struct holder_check {
	const struct blockdev *b;
	bool origin;		/* read-only holders are allowed */
	int allowed;		/* read-only holders of an origin */
	int refused;
};

static int check_one_holder(void *ctx, const struct holder *h)
{
	struct holder_check *c = ctx;

	if (c->origin && h->use == HOLDER_READS) {
		c->allowed++;
		return 0;
	}
	if (c->origin) {
		err("%s %s is in use by %s (%s, %s), which could write it behind cor's back:",
		    c->b->what, c->b->path, h->name, h->sysname, h->table);
		err("deactivate %s first (for an LV: lvchange -an or vgchange -an)", h->name);
	} else {
		err("%s %s is in use by %s (%s, %s): deactivate it first",
		    c->b->what, c->b->path, h->name, h->sysname, h->table);
	}
	c->refused++;
	return 0;
}

/*
 * Refuse a device that something else could write: an origin may be
 * shared with read-only users only; a destination or metadata device with
 * nobody.
 */
static int check_not_in_use(const struct blockdev *b, bool origin)
{
	struct holder_check c = { .b = b, .origin = origin };
	char mnt[PATH_MAX];
	int fd;

	walk_holders(b->sysname, b->rdev, check_one_holder, &c);
	if (c.refused)
		return -1;
	mount_point(b, mnt, sizeof(mnt));
	if (mnt[0]) {
		err("%s %s (or a partition of it) is mounted on %s: unmount it first",
		    b->what, b->path, mnt);
		return -1;
	}
	/* swap, or a program that opened it exclusively */
	fd = open(b->path, O_RDONLY | O_EXCL | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	/* held by read-only users (other cor devices) only: allowed above */
	if (errno == EBUSY && c.allowed)
		return 0;
	if (errno == EBUSY)
		err("%s %s is in use (swap, or opened exclusively by a program): release it first",
		    b->what, b->path);
	else
		err("%s %s: %s", b->what, b->path, strerror(errno));
	return -1;
}

/* ------------------------------------------------------------------ */
/* The metadata device */

enum meta_state {
	META_BLANK,		/* both superblock slots zero: the kernel formats it */
	META_VALID,
	META_FOREIGN,		/* something that is not dm-cor metadata */
	META_DAMAGED,		/* dm-cor metadata the kernel would refuse */
};

struct meta_info {
	enum meta_state state;
	char why[512];
	struct cor_sb sb;	/* META_VALID: the slot the kernel loads */
	struct cor_geom geom;
	__u64 nr_hydrated;	/* META_VALID: in the newest committed state */
};

static void meta_report(void *ctx, const char *fmt, ...)
{
	struct meta_info *m = ctx;
	size_t l = strlen(m->why);
	va_list ap;

	if (l)
		l += snprintf(m->why + l, sizeof(m->why) - l, "; ");
	if (l >= sizeof(m->why))
		return;
	va_start(ap, fmt);
	vsnprintf(m->why + l, sizeof(m->why) - l, fmt, ap);
	va_end(ap);
}

static int count_hydrated(struct cor_dev *dev, struct meta_info *m)
{
	__u64 *words, index, nbits;
	enum cor_blk_state st;

	words = calloc(DM_COR_BITMAP_WORDS, sizeof(*words));
	if (!words) {
		err("out of memory");
		return -1;
	}
	m->nr_hydrated = 0;
	for (index = 0; index < m->geom.bitmap_blocks; index++) {
		nbits = cor_block_nbits(&m->geom, index);
		st = cor_read_bitmap_block(dev, &m->geom, m->sb.active_area, 0, index, words);
		if (st != COR_BLK_OK) {
			m->state = META_DAMAGED;
			snprintf(m->why, sizeof(m->why), "hydrated bitmap block %llu: %s",
				 index, cor_blk_state_name(st));
			break;
		}
		m->nr_hydrated += cor_count_bits(words, nbits);
	}
	free(words);
	return 0;
}

/* Read what the metadata device holds (it must not be in use) */
static int inspect_metadata(const char *path, struct meta_info *m)
{
	struct cor_slots slots;
	struct cor_dev dev;
	int i, r = -1;

	memset(m, 0, sizeof(*m));
	if (cor_dev_open(&dev, path, 0))
		return -1;
	if (cor_read_slots(&dev, &slots))
		goto out;
	if (slots.state[0] == COR_SLOT_ZERO && slots.state[1] == COR_SLOT_ZERO) {
		m->state = META_BLANK;
		r = 0;
		goto out;
	}
	if (slots.newest < 0) {
		bool magic = false;

		for (i = 0; i < DM_COR_NR_SUPERBLOCKS; i++)
			magic |= slots.state[i] == COR_SLOT_BAD_CSUM;
		m->state = magic ? META_DAMAGED : META_FOREIGN;
		snprintf(m->why, sizeof(m->why), "superblock slots: %s, %s",
			 cor_slot_state_name(slots.state[0]), cor_slot_state_name(slots.state[1]));
		r = 0;
		goto out;
	}
	m->sb = slots.sb[slots.newest];
	m->state = META_VALID;
	if (cor_sb_check(&m->sb, dev.nr_blocks, &m->geom, meta_report, m)) {
		m->state = META_DAMAGED;
	} else if (m->sb.flags & DM_COR_SB_NEEDS_CHECK) {
		m->state = META_DAMAGED;
		snprintf(m->why, sizeof(m->why), "it is flagged as needing a check");
	} else {
		r = count_hydrated(&dev, m);
		goto out;
	}
	r = 0;
out:
	cor_dev_close(&dev);
	return r;
}

/* Zero both superblock slots, so that the kernel formats the device */
static int wipe_superblocks(const char *path)
{
	static const __u8 zero[DM_COR_BLOCK_SIZE];
	struct cor_dev dev;
	unsigned int i;
	int r = 0;

	if (cor_dev_open(&dev, path, COR_OPEN_WRITE))
		return -1;
	for (i = 0; i < DM_COR_NR_SUPERBLOCKS && !r; i++)
		r = cor_dev_write(&dev, i, zero);
	if (!r)
		r = cor_dev_sync(&dev);
	if (cor_dev_close(&dev))
		r = -1;
	return r;
}

/* ------------------------------------------------------------------ */
/* The kernel's reason */

/* Open /dev/kmsg at its end, or -1 (then the reason is "see dmesg") */
static int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0 && lseek(fd, 0, SEEK_END) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Print the device-mapper lines logged since kmsg_open() */
static void kmsg_print_dm(int fd)
{
	char rec[KMSG_LINE_MAX];
	int printed = 0;
	ssize_t n;
	char *msg;

	if (fd < 0) {
		err("the kernel's reason is in its log (dmesg)");
		return;
	}
	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* overwritten records */
		if (n <= 0)
			break;
		rec[n] = '\0';
		msg = strchr(rec, ';');
		if (!msg || !strstr(msg, "device-mapper"))
			continue;
		msg++;
		msg[strcspn(msg, "\n")] = '\0';
		err("kernel: %s", msg);
		printed++;
	}
	if (!printed)
		err("the kernel logged no reason (see dmesg)");
	close(fd);
}

/* ------------------------------------------------------------------ */
/* LVM's devices file */

/*
 * The origin and the destination of a cor device (and, after finalize,
 * the destination of the linear device) show the same PV label as the
 * device itself, so LVM would see one PV on several devices and refuse
 * the VG.  Where LVM's devices file is in use, it lists the devices LVM
 * may use: the cor device goes in, its components come out.  lvmdevices
 * does the editing, so the file stays LVM's.
 */
/* LVM's own: $LVM_SYSTEM_DIR (default /etc/lvm)/devices/system.devices */
static const char *lvm_devices_file(void)
{
	static char path[PATH_MAX];
	const char *dir = getenv("LVM_SYSTEM_DIR");

	snprintf(path, sizeof(path), "%s/devices/system.devices", dir && *dir ? dir : "/etc/lvm");
	return path;
}

/* Whether the devices file has a line with @key@value followed by a blank */
static bool devices_file_has(const char *key, const char *value)
{
	char line[4096], want[PATH_MAX + 32];
	bool found = false;
	FILE *f;

	f = fopen(lvm_devices_file(), "re");
	if (!f)
		return false;
	snprintf(want, sizeof(want), "%s%s ", key, value);
	while (!found && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = ' ';
		found = strstr(line, want);
	}
	fclose(f);
	return found;
}

/*
 * The name under which the devices file lists @b (its DEVNAME or IDNAME):
 * the path given, /dev/SYSNAME, or /dev/mapper/NAME of a dm device.
 */
static bool devices_file_entry(const struct blockdev *b, char *dev, size_t len)
{
	char path[PATH_MAX], dm_name[NAME_MAX + 1];
	const char *names[3] = { b->path, path, NULL };
	unsigned int i;

	snprintf(path, sizeof(path), "/dev/%s", b->sysname);
	snprintf(dev, len, "/sys/class/block/%s/dm/name", b->sysname);
	if (!read_sysfs(dev, dm_name, sizeof(dm_name))) {
		snprintf(dev, len, "/dev/mapper/%s", dm_name);
		names[2] = dev;
	}
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		if (names[i] && (devices_file_has("DEVNAME=", names[i]) ||
				 devices_file_has("IDNAME=", names[i]))) {
			if (names[i] != dev)
				snprintf(dev, len, "%s", names[i]);
			return true;
		}
	}
	return false;
}

static int run_lvmdevices(const char *op, const char *dev)
{
	char cmd[PATH_MAX + 64];
	int r;

	snprintf(cmd, sizeof(cmd), "lvm lvmdevices --yes %s '%s' >/dev/null 2>&1", op, dev);
	r = system(cmd);
	if (r) {
		err("lvm lvmdevices %s %s failed (exit %d)", op, dev,
		    WIFEXITED(r) ? WEXITSTATUS(r) : r);
		return -1;
	}
	return 0;
}

static void update_lvm_devices_file(const char *name, const struct blockdev **parts,
				    unsigned int nr_parts)
{
	char mapper[PATH_MAX], dev[PATH_MAX];
	unsigned int i;

	if (access(lvm_devices_file(), F_OK))
		return;
	for (i = 0; i < nr_parts; i++) {
		if (!devices_file_entry(parts[i], dev, sizeof(dev)))
			continue;
		if (!run_lvmdevices("--deldev", dev))
			printf("%s: LVM devices file: %s (%s) removed: it is part of %s\n", name,
			       dev, parts[i]->what, name);
	}
	snprintf(mapper, sizeof(mapper), "/dev/mapper/%s", name);
	if (!devices_file_has("IDNAME=", mapper) && !run_lvmdevices("--adddev", mapper))
		printf("%s: LVM devices file: %s added\n", name, mapper);
}

/* ------------------------------------------------------------------ */
/* Setting a device up */

struct setup {
	const char *name;
	const char *origin;
	const char *dest;
	const char *metadata;	/* "-": volatile */
	struct cortab_options opt;
	__u64 length;		/* sectors, 0: the origin's size */
	bool may_exist;		/* activate: an active device of these devices is fine */
	bool format;		/* --format: may overwrite what is not dm-cor metadata */
	bool dry_run;
};

enum dm_presence {
	DM_ABSENT,
	DM_PRESENT,
	DM_UNKNOWN,		/* could not ask */
};

static enum dm_presence dm_device_exists(const char *name, struct dm_info *info)
{
	struct dm_task *dmt = new_task(DM_DEVICE_INFO, name);
	enum dm_presence r = DM_UNKNOWN;

	if (!dmt)
		return r;
	if (dm_task_run(dmt) && dm_task_get_info(dmt, info))
		r = info->exists ? DM_PRESENT : DM_ABSENT;
	else
		err("%s: cannot get device information: %s", name, task_error(dmt));
	dm_task_destroy(dmt);
	return r;
}

/* Build the cor table's parameters */
static void cor_params(const struct setup *s, const struct blockdev *o,
		       const struct blockdev *d, const struct blockdev *m,
		       __u64 region, char *buf, size_t len)
{
	char opts[256] = "";
	int nr = 0;
	size_t l = 0;

	if (s->opt.hydrate) {
		l += snprintf(opts + l, sizeof(opts) - l, " background_hydration");
		nr++;
	}
	if (s->opt.hydration_threshold) {
		l += snprintf(opts + l, sizeof(opts) - l, " hydration_threshold %llu",
			      s->opt.hydration_threshold);
		nr += 2;
	}
	if (s->opt.hydration_batch_size) {
		l += snprintf(opts + l, sizeof(opts) - l, " hydration_batch_size %llu",
			      s->opt.hydration_batch_size);
		nr += 2;
	}
	if (s->opt.no_discard_passdown) {
		snprintf(opts + l, sizeof(opts) - l, " no_discard_passdown");
		nr++;
	}
	if (m)
		snprintf(buf, len, "%u:%u %u:%u %u:%u %llu %d%s", major(o->rdev), minor(o->rdev),
			 major(d->rdev), minor(d->rdev), major(m->rdev), minor(m->rdev),
			 region, nr, opts);
	else
		snprintf(buf, len, "%u:%u %u:%u - %llu %d%s", major(o->rdev), minor(o->rdev),
			 major(d->rdev), minor(d->rdev), region, nr, opts);
}

static int load_table(const struct setup *s, const char *type, __u64 len, const char *params)
{
	char uuid[DM_NAME_LEN + 8];
	struct dm_task *dmt;
	uint32_t cookie = 0;
	int kmsg, r = -1;

	dmt = new_task(DM_DEVICE_CREATE, s->name);
	if (!dmt)
		return -1;
	/* a stable identity: /dev/disk/by-id/dm-uuid-COR-NAME where udev runs */
	snprintf(uuid, sizeof(uuid), "COR-%s", s->name);
	if (!dm_task_set_uuid(dmt, uuid) ||
	    (s->opt.read_only && !dm_task_set_ro(dmt)) ||
	    !dm_task_add_target(dmt, 0, len, type, params) ||
	    !dm_task_set_cookie(dmt, &cookie, 0)) {
		err("%s: cannot prepare the device-mapper task", s->name);
		dm_task_destroy(dmt);
		return -1;
	}
	kmsg = kmsg_open();
	dm_last_error[0] = '\0';
	if (dm_task_run(dmt)) {
		r = 0;
		if (kmsg >= 0)
			close(kmsg);
	} else {
		err("%s: the kernel refused the table \"0 %llu %s %s\": %s", s->name, len, type,
		    params, task_error(dmt));
		kmsg_print_dm(kmsg);
	}
	dm_udev_wait(cookie);
	dm_task_destroy(dmt);
	return r;
}

/* What an existing device NAME must look like to count as this setup */
static int check_existing(const struct setup *s, const struct dm_info *info)
{
	struct dev d = { .major = info->major, .minor = info->minor };
	char *type = NULL, *params = NULL;
	struct blockdev o, dst;
	__u64 len;
	int nr, r = -1;

	snprintf(d.name, sizeof(d.name), "%s", s->name);
	if (get_table(&d, &type, &params, &len, &nr))
		return -1;
	if (nr == 1 && !strcmp(type, "cor") && !open_blockdev(&o, "origin", s->origin) &&
	    !open_blockdev(&dst, "destination", s->dest) && first_dev_is(params, o.rdev) &&
	    table_dev_is(params, 1, dst.rdev)) {
		printf("%s: already active\n", s->name);
		r = 0;
	} else if (nr == 1 && !strcmp(type, "linear") &&
		   !open_blockdev(&dst, "destination", s->dest) && first_dev_is(params, dst.rdev)) {
		printf("%s: already active (finalized: linear over the destination)\n", s->name);
		r = 0;
	} else {
		err("%s exists with another table (%s%s): refusing to touch it", s->name,
		    nr ? type : "none", nr > 1 ? " and more targets" : "");
	}
	free(type);
	free(params);
	return r;
}

/*
 * What the metadata device holds decides the geometry: valid metadata its
 * own (options that differ are refused), blank metadata the options'.
 */
static int check_metadata(const struct setup *s, const struct blockdev *m,
			  struct meta_info *mi, __u64 *region, __u64 *len, bool *blank)
{
	char a[64];

	if (inspect_metadata(m->path, mi))
		return -1;
	switch (mi->state) {
	case META_VALID:
		if (*region && *region != mi->geom.region_sectors) {
			err("metadata %s records a region size of %llu sectors, not %llu:",
			    m->path, mi->geom.region_sectors, *region);
			err("refusing: the region size of metadata cannot change");
			return -1;
		}
		if (*len && *len != mi->geom.target_sectors) {
			err("metadata %s records a length of %s, not %llu sectors:", m->path,
			    fmt_sectors(mi->geom.target_sectors, a, sizeof(a)), *len);
			err("refusing: its length cannot change");
			return -1;
		}
		if (s->format) {
			err("metadata %s: dm-cor metadata, %llu/%llu regions hydrated:",
			    m->path, mi->nr_hydrated, mi->geom.nr_regions);
			err("refusing to format it; without --format it is re-attached");
			return -1;
		}
		*region = mi->geom.region_sectors;
		*len = mi->geom.target_sectors;
		return 0;
	case META_BLANK:
		if (!s->format && !s->opt.format) {
			err("metadata %s is blank (its superblocks are zero):", m->path);
			err("refusing to format it without --format (cortab: format)");
			return -1;
		}
		*blank = true;
		return 0;
	case META_FOREIGN:
		if (!s->format) {
			err("metadata %s holds something that is not dm-cor metadata (%s):",
			    m->path, mi->why);
			err("refusing; --format overwrites it");
			return -1;
		}
		*blank = true;
		return 0;
	case META_DAMAGED:
		break;
	}
	err("metadata %s holds damaged dm-cor metadata (%s):", m->path, mi->why);
	err("refusing; run cor_check %s, then cor_repair", m->path);
	return -1;
}

/* Every region hydrated: linear over the destination, the origin unused */
static int setup_linear(const struct setup *s, const struct blockdev *d,
			const struct blockdev *m, __u64 len)
{
	const struct blockdev *parts[2] = { d, m };
	char params[64], a[64], b[64];

	if (d->sectors < len) {
		err("destination %s is too small: %s, the device needs %s", d->path,
		    fmt_sectors(d->sectors, a, sizeof(a)), fmt_sectors(len, b, sizeof(b)));
		return -1;
	}
	snprintf(params, sizeof(params), "%u:%u 0", major(d->rdev), minor(d->rdev));
	if (s->dry_run) {
		printf("%s: would load \"0 %llu linear %s\" (every region is hydrated)\n",
		       s->name, len, params);
		return 0;
	}
	if (load_table(s, "linear", len, params))
		return -1;
	printf("%s: every region is hydrated: activated as linear over %s\n", s->name,
	       d->path);
	update_lvm_devices_file(s->name, parts, ARRAY_SIZE(parts));
	return 0;
}

static int setup_device(const struct setup *s)
{
	struct blockdev o, d, m;
	const struct blockdev *parts[3] = { &o, &d, &m };
	struct meta_info mi;
	struct dm_info info;
	char params[512], a[64], b[64];
	bool volatile_md = !strcmp(s->metadata, "-");
	bool blank = false;
	__u64 len, region, need;
	const char *why;
	struct cor_geom g;

	memset(&mi, 0, sizeof(mi));
	switch (dm_device_exists(s->name, &info)) {
	case DM_PRESENT:
		if (s->may_exist)
			return check_existing(s, &info);
		err("%s exists: refusing (corctl activate takes an active device as it is)",
		    s->name);
		return -1;
	case DM_UNKNOWN:
		return -1;
	case DM_ABSENT:
		break;
	}
	if (volatile_md && !s->opt.read_only) {
		err("%s: volatile metadata (\"-\") needs --read-only", s->name);
		return -1;
	}
	if (open_blockdev(&d, "destination", s->dest) ||
	    (!volatile_md && open_blockdev(&m, "metadata", s->metadata)))
		return -1;
	if (!volatile_md && d.rdev == m.rdev) {
		err("%s: origin, destination and metadata must be three different devices",
		    s->name);
		return -1;
	}
	if (d.read_only && !s->opt.read_only) {
		err("destination %s is a read-only block device", d.path);
		return -1;
	}
	if (check_not_in_use(&d, false) || (!volatile_md && check_not_in_use(&m, false)))
		return -1;

	/* the geometry: from valid metadata, else from the options */
	region = s->opt.region_sectors;
	len = s->length;
	if (!volatile_md && check_metadata(s, &m, &mi, &region, &len, &blank))
		return -1;
	if (mi.state == META_VALID && mi.nr_hydrated == mi.geom.nr_regions)
		return setup_linear(s, &d, &m, len);

	if (open_blockdev(&o, "origin", s->origin))
		return -1;
	if (o.rdev == d.rdev || (!volatile_md && o.rdev == m.rdev)) {
		err("%s: origin, destination and metadata must be three different devices",
		    s->name);
		return -1;
	}
	if (check_not_in_use(&o, true))
		return -1;
	if (!region)
		region = DEFAULT_REGION_SECTORS;
	if (!len)
		len = o.sectors;
	if (cor_geom_compute(region, len, &g, &why)) {
		err("%s: %s", s->name, why);
		return -1;
	}
	if (o.sectors < len) {
		err("origin %s is too small: %s, the device needs %s", o.path,
		    fmt_sectors(o.sectors, a, sizeof(a)), fmt_sectors(len, b, sizeof(b)));
		return -1;
	}
	if (!s->length && !blank && !volatile_md && o.sectors > len)
		printf("%s: note: origin %s has %llu sectors, the device keeps the %llu it had\n",
		       s->name, o.path, o.sectors, len);
	if (d.sectors < len) {
		err("destination %s is too small: %s, the device needs %s", d.path,
		    fmt_sectors(d.sectors, a, sizeof(a)), fmt_sectors(len, b, sizeof(b)));
		return -1;
	}
	need = g.nr_metadata_blocks * DM_COR_BLOCK_SECTORS;
	if (!volatile_md && m.sectors < need) {
		err("metadata %s is too small: %s, %llu regions of %llu sectors need %s", m.path,
		    fmt_sectors(m.sectors, a, sizeof(a)), g.nr_regions, region,
		    fmt_sectors(need, b, sizeof(b)));
		return -1;
	}

	cor_params(s, &o, &d, volatile_md ? NULL : &m, region, params, sizeof(params));
	if (s->dry_run) {
		printf("%s: would %sload \"0 %llu cor %s\"\n", s->name,
		       blank && !volatile_md ? "format the metadata and " : "", len, params);
		return 0;
	}
	if (blank && mi.state == META_FOREIGN) {
		printf("%s: formatting %s: overwriting what it held (%s)\n", s->name, m.path,
		       mi.why);
		if (wipe_superblocks(m.path))
			return -1;
	}
	if (load_table(s, "cor", len, params))
		return -1;
	if (volatile_md)
		printf("%s: created with volatile metadata, %llu regions of %s\n", s->name,
		       g.nr_regions, fmt_sectors(region, a, sizeof(a)));
	else if (blank)
		printf("%s: created, metadata %s formatted: %llu regions of %s\n", s->name,
		       m.path, g.nr_regions, fmt_sectors(region, a, sizeof(a)));
	else
		printf("%s: created, metadata %s re-attached: %llu/%llu regions hydrated\n",
		       s->name, m.path, mi.nr_hydrated, g.nr_regions);
	update_lvm_devices_file(s->name, parts, volatile_md ? 2 : 3);
	return 0;
}

/* ------------------------------------------------------------------ */
/* create */

static void usage_create(FILE *f)
{
	fprintf(f, "usage: %s create NAME ORIGIN DEST METADATA [options]\n"
		"Create the dm-cor device NAME after checking every device.\n"
		"METADATA with valid dm-cor metadata is re-attached (its region size and\n"
		"length are used); blank metadata is formatted only with --format.\n"
		"METADATA \"-\" (volatile) needs --read-only.\n\n"
		"Options:\n"
		"  -r, --region-size SIZE         region size (4k to 1g, a power of two;\n"
		"                                 default 64k for new metadata)\n"
		"  -l, --length SIZE              device length (default: the origin's)\n"
		"  -f, --format                   format blank metadata, or overwrite what is\n"
		"                                 not dm-cor metadata (never valid metadata)\n"
		"      --hydrate                  start background hydration\n"
		"      --hydration-threshold N    regions in flight for hydration\n"
		"      --hydration-batch-size N   contiguous regions per hydration I/O\n"
		"      --no-discard-passdown      do not pass discards to the destination\n"
		"      --read-only                a read-only device\n"
		"  -n, --dry-run                  check and print the table, change nothing\n"
		"  -h, --help                     this help\n"
		"SIZE: sectors, or bytes with a K, M, G or T suffix.\n", prog);
}

enum {
	OPT_HYDRATE = 256,
	OPT_THRESHOLD,
	OPT_BATCH,
	OPT_NO_DISCARD,
	OPT_READ_ONLY,
	OPT_CORTAB,
	OPT_INITRAMFS,
};

/* A count option: 1 to 2^32-1 */
static bool opt_count(const char *cmd, const char *opt, const char *arg, __u64 *v)
{
	if (!cor_parse_u64(arg, v) && *v && *v <= UINT32_MAX)
		return true;
	err("%s: %s: '%s' is not a count from 1 to %u", cmd, opt, arg, UINT32_MAX);
	hint(cmd);
	return false;
}

static bool opt_size(const char *cmd, const char *opt, const char *arg, __u64 *v)
{
	if (!cor_parse_size(arg, v, NULL) && *v)
		return true;
	err("%s: %s: '%s' is not a size (sectors, or bytes with K, M, G, T: a multiple of 512)",
	    cmd, opt, arg);
	hint(cmd);
	return false;
}

int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "region-size", required_argument, NULL, 'r' },
		{ "length", required_argument, NULL, 'l' },
		{ "format", no_argument, NULL, 'f' },
		{ "hydrate", no_argument, NULL, OPT_HYDRATE },
		{ "hydration-threshold", required_argument, NULL, OPT_THRESHOLD },
		{ "hydration-batch-size", required_argument, NULL, OPT_BATCH },
		{ "no-discard-passdown", no_argument, NULL, OPT_NO_DISCARD },
		{ "read-only", no_argument, NULL, OPT_READ_ONLY },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct setup s = { 0 };
	__u64 r;
	int c;

	while ((c = getopt_long(argc, argv, "r:l:fnhV", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (!opt_size("create", "--region-size", optarg, &r))
				return EXIT_USAGE;
			if (r < 8 || r > 2097152 || (r & (r - 1))) {
				err("create: --region-size: '%s' is not a power of two, 4k to 1g",
				    optarg);
				hint("create");
				return EXIT_USAGE;
			}
			s.opt.region_sectors = r;
			break;
		case 'l':
			if (!opt_size("create", "--length", optarg, &s.length))
				return EXIT_USAGE;
			break;
		case 'f':
			s.format = true;
			break;
		case OPT_HYDRATE:
			s.opt.hydrate = true;
			break;
		case OPT_THRESHOLD:
			if (!opt_count("create", "--hydration-threshold", optarg,
				       &s.opt.hydration_threshold))
				return EXIT_USAGE;
			break;
		case OPT_BATCH:
			if (!opt_count("create", "--hydration-batch-size", optarg,
				       &s.opt.hydration_batch_size))
				return EXIT_USAGE;
			break;
		case OPT_NO_DISCARD:
			s.opt.no_discard_passdown = true;
			break;
		case OPT_READ_ONLY:
			s.opt.read_only = true;
			break;
		case 'n':
			s.dry_run = true;
			break;
		default:
			return common_option(c, "create", usage_create);
		}
	}
	if (argc - optind != 4) {
		err("create: %s", argc - optind < 4 ?
		    "NAME ORIGIN DEST METADATA are needed" : "too many arguments");
		hint("create");
		return EXIT_USAGE;
	}
	s.name = argv[optind];
	s.origin = argv[optind + 1];
	s.dest = argv[optind + 2];
	s.metadata = argv[optind + 3];
	if (!cortab_valid_name(s.name)) {
		err("create: name '%s': use 1 to 127 of A-Z a-z 0-9 _ . - (not starting with -)",
		    s.name);
		return EXIT_USAGE;
	}
	if (!strcmp(s.metadata, "-") && s.format) {
		err("create: volatile metadata (\"-\") cannot be formatted");
		return EXIT_USAGE;
	}
	return setup_device(&s) ? EXIT_FAIL : EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* cortab: activate, deactivate */

static int read_cortab(struct cortab *tab, const char *path)
{
	unsigned int i;

	if (cortab_read(tab, path, false)) {
		err("%s: %s", path, strerror(errno));
		return -1;
	}
	for (i = 0; i < tab->nr_entries; i++)
		if (tab->entries[i].error)
			err("%s:%u: %s", path, tab->entries[i].line, tab->entries[i].error);
	return 0;
}

/*
 * The entries a command acts on: the named ones (each must exist and be
 * valid), or with no name every valid one that @all_ok accepts.  Refuses
 * everything when a named entry, or with no names any entry, is bad.
 */
static int pick_entries(struct cortab *tab, int argc, char **argv, const char *cmd,
			bool (*all_ok)(const struct cortab_entry *e),
			struct cortab_entry ***out, unsigned int *nr)
{
	struct cortab_entry **list;
	unsigned int n = 0, i;
	int bad = 0, a;

	list = calloc(tab->nr_entries + argc + 1, sizeof(*list));
	if (!list) {
		err("out of memory");
		return -1;
	}
	if (argc == optind) {
		if (tab->nr_errors) {
			err("%s: %s has %u bad line%s: nothing done", cmd, tab->path,
			    tab->nr_errors, tab->nr_errors > 1 ? "s" : "");
			bad = 1;
		}
		for (i = 0; i < tab->nr_entries; i++)
			if (all_ok(&tab->entries[i]))
				list[n++] = &tab->entries[i];
	}
	for (a = optind; a < argc; a++) {
		struct cortab_entry *e = cortab_find(tab, argv[a]);

		if (!e) {
			err("%s: %s has no line for '%s'", cmd, tab->path, argv[a]);
			bad = 1;
		} else if (e->error) {
			err("%s: the line of '%s' (%s:%u) is bad: nothing done", cmd, argv[a],
			    tab->path, e->line);
			bad = 1;
		} else {
			list[n++] = e;
		}
	}
	if (bad) {
		free(list);
		return -1;
	}
	*out = list;
	*nr = n;
	return 0;
}

static bool initramfs_only;

static bool activate_by_default(const struct cortab_entry *e)
{
	return !e->opt.noauto && (!initramfs_only || e->opt.initramfs);
}

static void usage_activate(FILE *f)
{
	fprintf(f, "usage: %s activate [--cortab FILE] [--initramfs] [--dry-run] [NAME...]\n"
		"Create the devices of cortab(5) lines: the named ones, or every line\n"
		"without noauto.  Each is checked as by \"create\"; metadata is formatted\n"
		"only for lines with the format option, and only when it is blank.  A\n"
		"line whose metadata records every region hydrated is activated as a\n"
		"linear device over its destination (the origin is not needed).  An\n"
		"active device with the same devices is left as it is.\n\n"
		"  -c, --cortab FILE   instead of %s\n"
		"      --initramfs     only the lines with the initramfs option\n"
		"  -n, --dry-run       check and print the tables, change nothing\n",
		prog, CORTAB_PATH);
}

int cmd_activate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cortab", required_argument, NULL, 'c' },
		{ "initramfs", no_argument, NULL, OPT_INITRAMFS },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *path = CORTAB_PATH;
	struct cortab_entry **list = NULL;
	struct cortab tab;
	unsigned int nr, i, failed = 0;
	bool dry = false;
	int c;

	while ((c = getopt_long(argc, argv, "c:nhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case OPT_INITRAMFS:
			initramfs_only = true;
			break;
		case 'n':
			dry = true;
			break;
		default:
			return common_option(c, "activate", usage_activate);
		}
	}
	if (read_cortab(&tab, path))
		return EXIT_FAIL;
	if (pick_entries(&tab, argc, argv, "activate", activate_by_default, &list, &nr)) {
		cortab_free(&tab);
		return EXIT_FAIL;
	}
	for (i = 0; i < nr; i++) {
		struct setup s = {
			.name = list[i]->name,
			.origin = list[i]->origin,
			.dest = list[i]->dest,
			.metadata = list[i]->metadata,
			.opt = list[i]->opt,
			.may_exist = true,
			.dry_run = dry,
		};

		if (setup_device(&s)) {
			err("activate: %s (%s:%u) not activated", s.name, path, list[i]->line);
			failed++;
		}
	}
	free(list);
	cortab_free(&tab);
	return failed ? EXIT_FAIL : EXIT_OK;
}

/* Refuse to remove a device that is open; name who has it open */
static int check_unused(const char *name, const struct dm_info *info)
{
	struct blockdev self = { .what = "device", .path = name };
	struct holder_check c = { .b = &self };
	char mnt[PATH_MAX];

	if (!info->open_count)
		return 0;
	self.rdev = makedev(info->major, info->minor);
	snprintf(self.sysname, sizeof(self.sysname), "dm-%u", info->minor);
	walk_holders(self.sysname, self.rdev, check_one_holder, &c);
	mount_point(&self, mnt, sizeof(mnt));
	if (mnt[0])
		err("%s is mounted on %s: unmount it first", name, mnt);
	else if (!c.refused)
		err("%s is open (%d users): close it first", name, info->open_count);
	return -1;
}

static bool deactivate_by_default(const struct cortab_entry *e)
{
	(void)e;
	return true;
}

static void usage_deactivate(FILE *f)
{
	fprintf(f, "usage: %s deactivate [--cortab FILE] [NAME...]\n"
		"Remove the devices of cortab(5) lines (the named ones, or every line),\n"
		"last line first.  The cor target commits its metadata on removal, so\n"
		"\"activate\" later finds every region as it was.  A device that is\n"
		"open (mounted, a VG active on it) is refused; one that is not active\n"
		"is skipped.\n\n"
		"  -c, --cortab FILE   instead of %s\n", prog, CORTAB_PATH);
}

int cmd_deactivate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cortab", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *path = CORTAB_PATH;
	struct cortab_entry **list = NULL;
	struct dm_info info;
	struct cortab tab;
	unsigned int nr, i, failed = 0;
	char *type, *params;
	struct dev d;
	__u64 len;
	int c, n;

	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		if (c == 'c')
			path = optarg;
		else
			return common_option(c, "deactivate", usage_deactivate);
	}
	if (read_cortab(&tab, path))
		return EXIT_FAIL;
	if (pick_entries(&tab, argc, argv, "deactivate", deactivate_by_default, &list, &nr)) {
		cortab_free(&tab);
		return EXIT_FAIL;
	}
	for (i = nr; i-- > 0;) {
		const char *name = list[i]->name;

		switch (dm_device_exists(name, &info)) {
		case DM_ABSENT:
			if (argc > optind)
				printf("%s: not active\n", name);
			continue;
		case DM_UNKNOWN:
			failed++;
			continue;
		case DM_PRESENT:
			break;
		}
		memset(&d, 0, sizeof(d));
		snprintf(d.name, sizeof(d.name), "%s", name);
		if (get_table(&d, &type, &params, &len, &n)) {
			failed++;
			continue;
		}
		if (n != 1 || (strcmp(type, "cor") && strcmp(type, "linear"))) {
			err("deactivate: %s is neither cor nor linear (table %s): refusing", name,
			    n ? type : "none");
			failed++;
		} else if (check_unused(name, &info) ||
			   simple_task(DM_DEVICE_REMOVE, &d, "remove", true)) {
			failed++;
		} else {
			printf("%s: deactivated\n", name);
		}
		free(type);
		free(params);
	}
	free(list);
	cortab_free(&tab);
	return failed ? EXIT_FAIL : EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* metadata-size */

static void usage_metadata_size(FILE *f)
{
	fprintf(f, "usage: %s metadata-size --size SIZE --region-size SIZE [-n] [-u UNIT]\n"
		"Print the metadata size a device of SIZE with regions of --region-size\n"
		"needs (as thin_metadata_size does).\n\n"
		"  -s, --size SIZE          the cor device's length\n"
		"  -r, --region-size SIZE   4k to 1g, a power of two\n"
		"  -u, --unit UNIT          s (sectors, default), b, k, m or g (rounded up)\n"
		"  -n, --numeric            the number only\n"
		"SIZE: sectors, or bytes with a K, M, G or T suffix.\n", prog);
}

int cmd_metadata_size(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "region-size", required_argument, NULL, 'r' },
		{ "unit", required_argument, NULL, 'u' },
		{ "numeric", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	static const struct { const char *name, *plural; unsigned int shift; } units[] = {
		{ "s", "sectors", 9 }, { "b", "bytes", 0 }, { "k", "KiB", 10 },
		{ "m", "MiB", 20 }, { "g", "GiB", 30 },
	};
	__u64 size = 0, region = 0, need, bytes;
	unsigned int unit = 0, i;
	bool numeric = false;
	struct cor_geom g;
	const char *why;
	char a[64];
	int c;

	while ((c = getopt_long(argc, argv, "s:r:u:nhV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!opt_size("metadata-size", "--size", optarg, &size))
				return EXIT_USAGE;
			break;
		case 'r':
			if (!opt_size("metadata-size", "--region-size", optarg, &region))
				return EXIT_USAGE;
			break;
		case 'u':
			for (i = 0; i < ARRAY_SIZE(units); i++)
				if (!strcasecmp(optarg, units[i].name))
					break;
			if (i == ARRAY_SIZE(units)) {
				err("metadata-size: --unit: '%s' is not s, b, k, m or g", optarg);
				hint("metadata-size");
				return EXIT_USAGE;
			}
			unit = i;
			break;
		case 'n':
			numeric = true;
			break;
		default:
			return common_option(c, "metadata-size", usage_metadata_size);
		}
	}
	if (optind < argc || !size || !region) {
		err("metadata-size: %s", optind < argc ? "too many arguments" :
		    "--size and --region-size are needed");
		hint("metadata-size");
		return EXIT_USAGE;
	}
	if (cor_geom_compute(region, size, &g, &why)) {
		err("metadata-size: %s", why);
		return EXIT_USAGE;
	}
	need = g.nr_metadata_blocks * DM_COR_BLOCK_SECTORS;
	bytes = need << SECTOR_SHIFT;
	if (units[unit].shift == 9)
		bytes = need;
	else
		bytes = (bytes + (1ULL << units[unit].shift) - 1) >> units[unit].shift;
	if (numeric)
		printf("%llu\n", bytes);
	else if (units[unit].shift == 9)
		printf("%s of metadata for %llu regions of %llu sectors\n",
		       fmt_sectors(need, a, sizeof(a)), g.nr_regions, region);
	else
		printf("%llu %s (%llu sectors) of metadata for %llu regions of %llu sectors\n",
		       bytes, units[unit].plural, need, g.nr_regions, region);
	return EXIT_OK;
}
