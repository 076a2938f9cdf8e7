// SPDX-License-Identifier: GPL-2.0-only
/*
 * HAVE_REQ_WRITE_UNCHANGED: the block layer has the REQ_WRITE_UNCHANGED
 * write flag ("this write does not change what the device presents").
 * Upstream: not merged; added by patch 1 of the dm-cor series
 * ("block: add REQ_WRITE_UNCHANGED", scripts/make-series.sh).
 */
#include <linux/blk_types.h>

blk_opf_t dm_cor_probe(void);
blk_opf_t dm_cor_probe(void)
{
	return REQ_OP_WRITE | REQ_WRITE_UNCHANGED;
}
