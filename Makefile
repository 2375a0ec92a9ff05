# Build, install and test Aether's C library, daemon and CLI.
#   make install PREFIX=/usr DESTDIR=/tmp/pkgroot     (staged install)
#   make c-test                                         (C programs via pkg-config)

CARGO      ?= cargo
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
PCDIR      ?= $(LIBDIR)/pkgconfig

TARGET     := $(or $(CARGO_TARGET_DIR),target)
RELEASE    := $(TARGET)/release
VERSION    := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
# The SONAME is set by libaether/build.rs.
SONAME     := libaether.so.0
REALNAME   := libaether.so.$(VERSION)

# Native libraries a static link needs, as rustc reports them (its own target
# dir, so the main build is not invalidated); the fallback is what x86_64
# glibc needs.
LIBS_PRIVATE ?= $(or $(shell $(CARGO) rustc -q -p aether --release --lib \
	--crate-type staticlib --target-dir $(TARGET)/native-libs \
	-- --print native-static-libs 2>&1 | sed -n 's/^note: native-static-libs: //p'), \
	-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc)

.PHONY: build install uninstall c-test

build:
	$(CARGO) build --release --workspace

install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR)
	install -m 755 $(RELEASE)/libaether.so $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sfn $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libaether.so
	install -m 644 $(RELEASE)/libaether.a $(DESTDIR)$(LIBDIR)/libaether.a
	install -m 644 include/aether.h $(DESTDIR)$(INCLUDEDIR)/aether.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS_PRIVATE@|$(strip $(LIBS_PRIVATE))|' \
	    pkgconfig/aether.pc.in > $(RELEASE)/aether.pc
	install -m 644 $(RELEASE)/aether.pc $(DESTDIR)$(PCDIR)/aether.pc
	install -m 755 $(RELEASE)/aetherd $(RELEASE)/aether-cli $(DESTDIR)$(BINDIR)/

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libaether.so $(DESTDIR)$(LIBDIR)/libaether.a \
	      $(DESTDIR)$(INCLUDEDIR)/aether.h $(DESTDIR)$(PCDIR)/aether.pc \
	      $(DESTDIR)$(BINDIR)/aetherd $(DESTDIR)$(BINDIR)/aether-cli

c-test:
	bash scripts/c-tests.sh
