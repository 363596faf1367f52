# hsmctl: libhsmctl, the hsmctl CLI and the hsmd node.
#
#   make            build lib/libhsmctl.so.0, lib/libhsmctl.a, cli/hsmctl, node/hsmd
#   make check      build with ASan+UBSan in build/san and run every test
#   make demo       build, start a local 3-node cluster in ./demo and show a session
#   make demo-stop  stop the demo's nodes
#   make fuzz       build the libFuzzer targets with clang in build/fuzz
#   make bench      measure the performance figures against their references
#   make install    PREFIX=/usr/local DESTDIR=

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions

# Output directory: in-tree by default; `make check` uses build/san.
O ?= .
SAN ?= 0

VERSION := $(shell sed -n 's/^\#define HSMCTL_VERSION "\(.*\)"/\1/p' lib/hsmctl.h)
SOMAJOR := 0

CC ?= cc
PKG_CONFIG ?= pkg-config
WARN := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
	-Wpointer-arith -Wformat=2 -Wno-format-nonliteral
HARDEN := -fstack-protector-strong -fPIC
ifeq ($(SAN),1)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
else
OPT := -O2 -g -D_FORTIFY_SOURCE=2
endif
CPPFLAGS += -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Ilib
# The session extension records each transaction's changes (node/repl.c).
CPPFLAGS += -DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_PREUPDATE_HOOK
CFLAGS ?=
override CFLAGS += -std=c11 $(WARN) $(HARDEN) $(OPT) \
	$(shell $(PKG_CONFIG) --cflags libcbor libssh2 openssl libssh sqlite3 jansson libedit 2>/dev/null)
SANFLAGS := -fsanitize=address,undefined
LDFLAGS_SAN := $(if $(filter 1,$(SAN)),$(SANFLAGS))

LIB_LIBS  := $(shell $(PKG_CONFIG) --libs libcbor libssh2 libcrypto 2>/dev/null) -lpthread
CLI_LIBS  := $(shell $(PKG_CONFIG) --libs jansson libedit 2>/dev/null)
NODE_LIBS := $(shell $(PKG_CONFIG) --libs libssh sqlite3 2>/dev/null) -lpthread
TEST_LIBS := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

LIB_SRC  := $(sort $(wildcard lib/*.c))
CLI_SRC  := $(sort $(wildcard cli/*.c))
NODE_SRC := $(sort $(wildcard node/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(O)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(O)/%.o)
NODE_OBJ := $(NODE_SRC:%.c=$(O)/%.o)
UNIT_BIN := $(UNIT_SRC:%.c=$(O)/%)
CLI_LIB_OBJ := $(filter-out $(O)/cli/main.o,$(CLI_OBJ))
NODE_LIB_OBJ := $(filter-out $(O)/node/hsmd.o,$(NODE_OBJ))

SOLIB   := $(O)/lib/libhsmctl.so.$(SOMAJOR)
ALIB    := $(O)/lib/libhsmctl.a
HSMCTL  := $(O)/cli/hsmctl
HSMD    := $(O)/node/hsmd
PCFILE  := $(O)/libhsmctl.pc
MANS    := man/hsmctl.1 man/hsmctl.conf.5 man/hsmd.8

.PHONY: all check demo demo-stop install uninstall clean fuzz fuzz-smoke unit e2e lint-man deps bench
all: $(SOLIB) $(O)/lib/libhsmctl.so $(ALIB) $(PCFILE) $(HSMCTL) $(HSMD)

# V=1 shows the full command lines.
ifeq ($(V),1)
Q :=
else
Q := @
endif

$(O)/%.o: %.c $(wildcard lib/*.h cli/*.h node/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(ALIB): $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

# Only the hsm_* API is exported (lib/export.map).
$(SOLIB): $(LIB_OBJ) lib/export.map
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,libhsmctl.so.$(SOMAJOR) -Wl,--version-script=lib/export.map \
		$(LDFLAGS_SAN) $(LDFLAGS) -o $@ $(LIB_OBJ) $(LIB_LIBS)

$(O)/lib/libhsmctl.so: $(SOLIB)
	ln -sf libhsmctl.so.$(SOMAJOR) $@

$(PCFILE): libhsmctl.pc.in lib/hsmctl.h
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

# The programs link libhsmctl statically, like OpenSSH links its libssh.a:
# no run-time search path, and the installed .so is for other programs.
$(HSMCTL): $(CLI_OBJ) $(ALIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_SAN) $(LDFLAGS) -o $@ $(CLI_OBJ) $(ALIB) $(CLI_LIBS) $(LIB_LIBS)

$(HSMD): $(NODE_OBJ) $(ALIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_SAN) $(LDFLAGS) -o $@ $(NODE_OBJ) $(ALIB) $(NODE_LIBS) $(LIB_LIBS)

# Unit tests of node modules (test_node_*): everything in node/ but hsmd.o.
$(O)/tests/unit/test_node_%: tests/unit/test_node_%.c $(ALIB) $(NODE_LIB_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(CPPFLAGS) -Inode $(CFLAGS) -Wno-missing-prototypes $(LDFLAGS_SAN) $(LDFLAGS) -o $@ $< \
		$(NODE_LIB_OBJ) $(ALIB) $(TEST_LIBS) $(NODE_LIBS) $(LIB_LIBS)

# Unit tests may test CLI modules (everything in cli/ but main.o).
$(O)/tests/unit/%: tests/unit/%.c $(ALIB) $(CLI_LIB_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(CPPFLAGS) -Icli $(CFLAGS) -Wno-missing-prototypes $(LDFLAGS_SAN) $(LDFLAGS) -o $@ $< \
		$(CLI_LIB_OBJ) $(ALIB) $(TEST_LIBS) $(CLI_LIBS) $(LIB_LIBS)

$(O)/tests/so_smoke: tests/so_smoke.c $(SOLIB) $(O)/lib/libhsmctl.so
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS_SAN) -o $@ $< -L$(O)/lib -lhsmctl -Wl,-rpath,'$$ORIGIN/../lib'

deps:
	@scripts/deps.sh

SANDIR := build/san
SANENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=99

check: deps
	$(MAKE) --no-print-directory O=$(SANDIR) SAN=1 all unit-bins
	$(MAKE) --no-print-directory lint-man MAN_HSMCTL=$(SANDIR)/cli/hsmctl
	$(MAKE) --no-print-directory O=$(SANDIR) SAN=1 unit
	$(SANENV) tests/e2e/run.sh $(SANDIR)
	$(MAKE) --no-print-directory fuzz-smoke
	@echo "make check: all tests passed"

unit-bins: $(UNIT_BIN) $(O)/tests/so_smoke

unit: unit-bins
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $(SANENV) $$t; done
	$(SANENV) $(O)/tests/so_smoke
	@readelf -d $(SOLIB) | grep -q 'SONAME.*\[libhsmctl.so.$(SOMAJOR)\]' || { echo "bad soname"; exit 1; }

e2e: all
	tests/e2e/run.sh $(O)

lint-man:
	@for m in $(MANS); do mandoc -Tlint -Wwarning $$m || exit 1; done
	@tests/man_check.sh $(MAN_HSMCTL)

FUZZDIR := build/fuzz
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZDIR)/%)
FUZZ_SECONDS ?= 60

fuzz: $(FUZZ_BIN)

# Fuzz targets may use the pure CLI modules too (the tokenizer).
FUZZ_CLI_SRC := cli/tokenize.c

$(FUZZDIR)/%: tests/fuzz/%.c $(LIB_SRC) $(FUZZ_CLI_SRC) $(wildcard lib/*.h cli/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang $(CPPFLAGS) -Icli -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
		$(shell $(PKG_CONFIG) --cflags libcbor libssh2 openssl) -o $@ $< $(LIB_SRC) \
		$(FUZZ_CLI_SRC) $(LIB_LIBS)

# Every target shares the time budget; the corpus lives in build/ only.
fuzz-smoke: fuzz
	@set -e; n=$(words $(FUZZ_BIN)); per=$$(( $(FUZZ_SECONDS) / n )); \
	for f in $(FUZZ_BIN); do \
	  c=$(FUZZDIR)/corpus-$$(basename $$f); mkdir -p $$c; \
	  cp tests/fuzz/corpus/$$(basename $$f)/* $$c/ 2>/dev/null || true; \
	  echo "== $$f ($$per s)"; $$f -max_total_time=$$per -max_len=4096 -print_final_stats=1 $$c 2>$(FUZZDIR)/$$(basename $$f).log \
	    || { tail -50 $(FUZZDIR)/$$(basename $$f).log; exit 1; }; \
	  grep -E 'stat::number_of_executed_units' $(FUZZDIR)/$$(basename $$f).log; \
	done

demo: deps
	$(MAKE) --no-print-directory all
	scripts/demo.sh

# The nodes of make demo (pids in demo/*/hsmd.pid).
demo-stop:
	@scripts/demo.sh stop

# Every performance figure against its reference, measured in one run on
# this machine: one table, and bench/results.json (scripts/bench.sh --quick
# is a smoke run).  Builds in-tree, optimised, without sanitizers.
bench:
	@scripts/bench.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR) \
		$(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 755 $(HSMCTL) $(DESTDIR)$(BINDIR)/hsmctl
	install -m 755 $(HSMD) $(DESTDIR)$(SBINDIR)/hsmd
	install -m 755 $(SOLIB) $(DESTDIR)$(LIBDIR)/libhsmctl.so.$(SOMAJOR)
	ln -sf libhsmctl.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libhsmctl.so
	install -m 644 $(ALIB) $(DESTDIR)$(LIBDIR)/libhsmctl.a
	install -m 644 lib/hsmctl.h $(DESTDIR)$(INCLUDEDIR)/hsmctl.h
	install -m 644 $(PCFILE) $(DESTDIR)$(PKGCONFIGDIR)/libhsmctl.pc
	install -m 644 man/hsmctl.1 $(DESTDIR)$(MANDIR)/man1/hsmctl.1
	install -m 644 man/hsmctl.conf.5 $(DESTDIR)$(MANDIR)/man5/hsmctl.conf.5
	install -m 644 man/hsmd.8 $(DESTDIR)$(MANDIR)/man8/hsmd.8
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	install -m 644 completions/hsmctl.bash $(DESTDIR)$(BASHCOMPDIR)/hsmctl
	install -m 644 completions/_hsmctl $(DESTDIR)$(ZSHCOMPDIR)/_hsmctl

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/hsmctl $(DESTDIR)$(SBINDIR)/hsmd \
	  $(DESTDIR)$(LIBDIR)/libhsmctl.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libhsmctl.so \
	  $(DESTDIR)$(LIBDIR)/libhsmctl.a $(DESTDIR)$(INCLUDEDIR)/hsmctl.h \
	  $(DESTDIR)$(PKGCONFIGDIR)/libhsmctl.pc $(DESTDIR)$(MANDIR)/man1/hsmctl.1 \
	  $(DESTDIR)$(MANDIR)/man5/hsmctl.conf.5 $(DESTDIR)$(MANDIR)/man8/hsmd.8 \
	  $(DESTDIR)$(BASHCOMPDIR)/hsmctl $(DESTDIR)$(ZSHCOMPDIR)/_hsmctl

clean:
	rm -rf build demo
	rm -f lib/*.o cli/*.o node/*.o lib/libhsmctl.so* lib/libhsmctl.a libhsmctl.pc \
	  cli/hsmctl node/hsmd tests/so_smoke $(UNIT_SRC:%.c=%)
