// SPDX-License-Identifier: GPL-2.0-only
/*
 * HAVE_DM_IO_IOPRIO: dm_io() takes an I/O priority argument.
 * Upstream: v6.9-rc1, 6e5f0f6383b4 ("dm io: Support IO priority"); Debian
 * backports it to some 6.1 kernels, hence a probe, not a version check.
 */
#include <linux/dm-io.h>

int dm_cor_probe(struct dm_io_request *req, struct dm_io_region *where);
int dm_cor_probe(struct dm_io_request *req, struct dm_io_region *where)
{
	return dm_io(req, 1, where, NULL, IOPRIO_DEFAULT);
}
