// SPDX-License-Identifier: GPL-2.0-only
/*
 * HAVE_BLK_MODE_T: block devices are opened with blk_mode_t and BLK_OPEN_*
 * instead of fmode_t and FMODE_*.
 * Upstream: v6.5-rc1, 05bdb9965305 ("block: replace fmode_t with a
 * block-specific type for block open flags").
 */
#include <linux/blkdev.h>

blk_mode_t dm_cor_probe(void);
blk_mode_t dm_cor_probe(void)
{
	return BLK_OPEN_READ | BLK_OPEN_WRITE;
}
