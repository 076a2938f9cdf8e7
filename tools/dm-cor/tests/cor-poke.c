// SPDX-License-Identifier: GPL-2.0-only
/*
 * cor-poke: a test helper that damages dm-cor metadata images on purpose
 * while keeping the block checksum valid, so that the checks behind the
 * checksum (version, sizes, counts, ...) can be tested.
 *
 *   cor-poke IMAGE BLOCK OFFSET SIZE VALUE   store VALUE (little-endian,
 *                                            SIZE 1, 2, 4 or 8 bytes) at
 *                                            OFFSET of BLOCK, then fix the
 *                                            block's checksum
 *   cor-poke IMAGE BLOCK csum                only fix the checksum
 *
 * Blocks 0 and 1 are superblocks, the others bitmap blocks.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cor-meta.h"

int main(int argc, char **argv)
{
	__u64 blocknr, off = 0, size = 0, val = 0, le;
	__u8 block[DM_COR_BLOCK_SIZE];
	__le32 csum;
	int fd;

	cor_prog = "cor-poke";
	if ((argc != 4 && argc != 6) || cor_parse_u64(argv[2], &blocknr) ||
	    (argc == 4 && strcmp(argv[3], "csum")) ||
	    (argc == 6 && (cor_parse_u64(argv[3], &off) || cor_parse_u64(argv[4], &size) ||
			   cor_parse_u64(argv[5], &val) ||
			   (size != 1 && size != 2 && size != 4 && size != 8) ||
			   off + size > DM_COR_BLOCK_SIZE))) {
		fprintf(stderr,
			"usage: cor-poke IMAGE BLOCK OFFSET SIZE VALUE | IMAGE BLOCK csum\n");
		return 2;
	}
	fd = open(argv[1], O_RDWR);
	if (fd < 0 || pread(fd, block, sizeof(block), blocknr * DM_COR_BLOCK_SIZE) !=
		      sizeof(block)) {
		cor_err("%s: cannot read block %llu: %s", argv[1], blocknr, strerror(errno));
		return 1;
	}
	if (argc == 6) {
		le = htole64(val);
		memcpy(block + off, &le, size);
	}
	csum = htole32(cor_block_csum(block, blocknr < DM_COR_NR_SUPERBLOCKS ?
				      DM_COR_SB_CSUM_XOR : DM_COR_BITMAP_CSUM_XOR));
	memcpy(block, &csum, sizeof(csum));
	if (pwrite(fd, block, sizeof(block), blocknr * DM_COR_BLOCK_SIZE) != sizeof(block) ||
	    close(fd)) {
		cor_err("%s: cannot write block %llu: %s", argv[1], blocknr, strerror(errno));
		return 1;
	}
	return 0;
}
