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
#   make deb                  Debian packages dm-cor-dkms, dm-cor-tools in build/deb/
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
DEB_DIR := build/deb

.PHONY: all module tools install deb check test demo clean

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

# Built in a copy of the tree (without build/ and .git), so that the tree
# itself stays clean; only the .deb, .buildinfo and .changes files are kept.
# No -dbgsym package: apt install ./build/deb/*.deb installs the two.
deb:
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/src/dm-cor
	tar -c --exclude=./build --exclude=./.git . | tar -x -C $(DEB_DIR)/src/dm-cor
	cd $(DEB_DIR)/src/dm-cor && \
		DEB_BUILD_OPTIONS="noautodbgsym $(DEB_BUILD_OPTIONS)" dpkg-buildpackage -us -uc -b
	mv $(DEB_DIR)/src/*.deb $(DEB_DIR)/src/*.buildinfo $(DEB_DIR)/src/*.changes $(DEB_DIR)/
	rm -rf $(DEB_DIR)/src
	@ls -1 $(DEB_DIR)/*.deb

check:
	@test -n "$(CHECKPATCH)" || { echo "checkpatch.pl not found (apt-get install linux-source-6.12)"; exit 1; }
	$(CHECKPATCH) --strict --no-tree --terse -f $(SOURCES)

test:
	scripts/test-all.sh

demo:
	scripts/demo.sh

clean:
	rm -rf build
