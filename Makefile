# Build, install and test Aether's C library, daemon and CLI.
#   make                                                (build what install needs)
#   make install PREFIX=/usr/local                      (library, header, aether.pc,
#                                                        aetherd, aether-cli, man pages,
#                                                        shell completions)
#   make install PREFIX=/usr DESTDIR=/tmp/pkgroot       (staged install)
#   make uninstall PREFIX=...
#   make c-test                                         (C programs via pkg-config)
#
# `make install` builds only what is out of date (cargo decides; nothing is
# rebuilt when the release build is current), and never as root needs to:
# run `make` first as yourself, then `sudo make install`.

CARGO      ?= cargo
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
PCDIR      ?= $(LIBDIR)/pkgconfig
MANDIR     ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d

TARGET     := $(or $(CARGO_TARGET_DIR),target)
RELEASE    := $(TARGET)/release
VERSION    := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
# The SONAME is set by libaether/build.rs.
SONAME     := libaether.so.0
REALNAME   := libaether.so.$(VERSION)
# Generated pages and completions (from the clap definitions).
GENERATED  := $(RELEASE)/generated

.PHONY: all build install uninstall c-test

all: build

# cargo knows what is out of date; when nothing is, this takes a second.
build:
	$(CARGO) build --release -p aether -p aetherd -p aether-cli -p aether-mangen

# Native libraries a static link needs (Libs.private), as rustc reports
# them: computed once per build directory (in its own target dir, so the
# main build is not invalidated); the fallback is what x86_64 glibc needs.
$(RELEASE)/native-static-libs.txt: libaether/Cargo.toml Cargo.lock
	@mkdir -p $(RELEASE)
	@libs=$$($(CARGO) rustc -q -p aether --release --lib --crate-type staticlib \
		--target-dir $(TARGET)/native-libs -- --print native-static-libs 2>&1 | \
		sed -n 's/^note: native-static-libs: //p'); \
	echo "$${libs:--lgcc_s -lutil -lrt -lpthread -lm -ldl -lc}" > $@

$(GENERATED): build
	@rm -rf $@ && mkdir -p $@/man $@/completions
	$(RELEASE)/aether-mangen $@/man >/dev/null
	$(RELEASE)/aether-cli completions bash > $@/completions/aether-cli.bash
	$(RELEASE)/aether-cli completions zsh > $@/completions/_aether-cli
	$(RELEASE)/aether-cli completions fish > $@/completions/aether-cli.fish

install: build $(RELEASE)/native-static-libs.txt $(GENERATED)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 755 $(RELEASE)/libaether.so $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sfn $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libaether.so
	install -m 644 $(RELEASE)/libaether.a $(DESTDIR)$(LIBDIR)/libaether.a
	install -m 644 include/aether.h $(DESTDIR)$(INCLUDEDIR)/aether.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e "s|@LIBS_PRIVATE@|$$(cat $(RELEASE)/native-static-libs.txt)|" \
	    pkgconfig/aether.pc.in > $(RELEASE)/aether.pc
	install -m 644 $(RELEASE)/aether.pc $(DESTDIR)$(PCDIR)/aether.pc
	install -m 755 $(RELEASE)/aetherd $(RELEASE)/aether-cli $(DESTDIR)$(BINDIR)/
	install -m 644 $(GENERATED)/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(GENERATED)/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 $(GENERATED)/completions/aether-cli.bash $(DESTDIR)$(BASHCOMPDIR)/aether-cli
	install -m 644 $(GENERATED)/completions/_aether-cli $(DESTDIR)$(ZSHCOMPDIR)/_aether-cli
	install -m 644 $(GENERATED)/completions/aether-cli.fish $(DESTDIR)$(FISHCOMPDIR)/aether-cli.fish

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libaether.so $(DESTDIR)$(LIBDIR)/libaether.a \
	      $(DESTDIR)$(INCLUDEDIR)/aether.h $(DESTDIR)$(PCDIR)/aether.pc \
	      $(DESTDIR)$(BINDIR)/aetherd $(DESTDIR)$(BINDIR)/aether-cli \
	      $(DESTDIR)$(MANDIR)/man8/aetherd.8 $(DESTDIR)$(MANDIR)/man1/aether-cli.1 \
	      $(DESTDIR)$(MANDIR)/man1/aether-cli-*.1 \
	      $(DESTDIR)$(BASHCOMPDIR)/aether-cli $(DESTDIR)$(ZSHCOMPDIR)/_aether-cli \
	      $(DESTDIR)$(FISHCOMPDIR)/aether-cli.fish

c-test:
	bash scripts/c-tests.sh
