# SPDX-License-Identifier: GPL-2.0-only
# corctl, the dm-cor operator front end: a makefile fragment that
# tools/dm-cor/Makefile includes, also usable alone from tools/dm-cor:
#   make -f corctl.mk [corctl|install-corctl|clean-corctl]
# Needs libdevmapper (Debian: libdevmapper-dev).

CORCTL_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
CC ?= gcc
CFLAGS ?= -O2 -g
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
CORCTL_CFLAGS := -Wall -Wextra
CORCTL_LDLIBS := -ldevmapper

corctl: $(CORCTL_DIR)/corctl.c
	$(CC) $(CFLAGS) $(CORCTL_CFLAGS) $(CPPFLAGS) -o $@ $< $(LDFLAGS) $(CORCTL_LDLIBS)

install-corctl: corctl
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8
	install -m 0755 corctl $(DESTDIR)$(SBINDIR)/
	install -m 0644 $(CORCTL_DIR)/man/corctl.8 $(DESTDIR)$(MANDIR)/man8/

clean-corctl:
	rm -f corctl

.PHONY: install-corctl clean-corctl
