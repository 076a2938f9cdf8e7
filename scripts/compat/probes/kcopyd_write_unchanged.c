// SPDX-License-Identifier: GPL-2.0-only
/*
 * HAVE_KCOPYD_WRITE_UNCHANGED: dm-kcopyd can mark its writes with
 * REQ_WRITE_UNCHANGED (the DM_KCOPYD_WRITE_UNCHANGED flag).
 * Upstream: not merged; added by patch 2 of the dm-cor series
 * ("dm kcopyd: add DM_KCOPYD_WRITE_UNCHANGED", scripts/make-series.sh).
 */
#include <linux/bits.h>
#include <linux/dm-kcopyd.h>

unsigned int dm_cor_probe(void);
unsigned int dm_cor_probe(void)
{
	return BIT(DM_KCOPYD_WRITE_UNCHANGED);
}
