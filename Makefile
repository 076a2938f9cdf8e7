# SPDX-License-Identifier: GPL-2.0-only
#
# Out-of-tree build of dm-cor against any kernel build tree.
#
#   make                      module for the running kernel
#   make KVER=6.12.117+deb12-amd64
#   make KDIR=/path/to/linux  module against a configured kernel tree
#   make W=1 C=2              extra warnings and sparse, as CI runs them
#   make tools                userspace tools and selftest helpers
#   make install              the tools and their man pages (PREFIX, DESTDIR)
#   make check                checkpatch --strict on the sources
#   make test                 the whole suite in VMs (both Debian kernels)
#
# Each kernel gets its own build directory, build/<kernel release>/, holding
# a copy of the sources and the config header the compat probes generate.

KVER ?= $(shell uname -r)
KDIR ?= /lib/modules/$(KVER)/build
BUILD ?= build/$(KVER)
SOURCES := $(wildcard drivers/md/dm-cor-*.c drivers/md/dm-cor-*.h)
PROBES := $(wildcard scripts/compat/probes/*.c)
CHECKPATCH ?= $(firstword $(wildcard /usr/src/linux-source-6.12/scripts/checkpatch.pl \
	$(HOME)/.cache/dm-cor/linux-source-6.12/scripts/checkpatch.pl))

W ?=
C ?=

.PHONY: all module tools install check test demo clean

all: module

module: $(BUILD)/dm-cor-config.h
	cp -p $(SOURCES) Kbuild $(BUILD)/
	$(MAKE) -C $(KDIR) M=$(abspath $(BUILD)) W=$(W) C=$(C) modules

$(BUILD)/dm-cor-config.h: $(PROBES) scripts/compat/probe.sh
	mkdir -p $(BUILD)
	scripts/compat/probe.sh $(KDIR) $@

tools:
	$(MAKE) -C tools/testing/selftests/dm-cor
	$(MAKE) -C tools/dm-cor

install:
	$(MAKE) -C tools/dm-cor install

check:
	@test -n "$(CHECKPATCH)" || { echo "checkpatch.pl not found (apt-get install linux-source-6.12)"; exit 1; }
	$(CHECKPATCH) --strict --no-tree --terse -f $(SOURCES)

test:
	scripts/test-all.sh

demo:
	scripts/demo.sh

clean:
	rm -rf build
