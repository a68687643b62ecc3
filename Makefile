# Makefile - builds mod_sse with apxs; runs its tests and the demo server.
APXS    ?= apxs
PYTHON  ?= /usr/bin/python3
SRCS     = mod_sse.c sse_config.c sse_event.c sse_json.c sse_query.c \
           sse_store.c sse_store_clients.c sse_store_repair.c \
           sse_store_check.c sse_notify.c sse_writer.c sse_publish.c \
           sse_publish_stream.c sse_location.c sse_access.c sse_jwt.c \
           sse_request.c sse_stream_io.c sse_stream.c sse_admin.c \
           sse_report.c sse_filter.c sse_ticker.c sse_response_api.c \
           sse_redis.c sse_read_cache.c
HEADERS  = $(wildcard *.h)
WARN     = -Wc,-Wall -Wc,-Wextra -Wc,-std=gnu99 \
           -Wc,-Werror=implicit-function-declaration
# extra apxs flags (-Wc,<flag> / -Wl,<flag>): debian/rules passes Debian's
# build flags here
APXS_FLAGS ?=
# units without httpd headers, linked into the C unit tests
PURE     = sse_event.c sse_json.c sse_query.c sse_store.c sse_store_clients.c \
           sse_store_repair.c sse_store_check.c sse_jwt.c sse_read_cache.c

.PHONY: all deps install activate unit test test-faults demo demo-screenshot clean bench \
        asan asan-unit asan-ci fuzz fuzz-build fuzz-smoke deb examples

all: .libs/mod_sse.so

.libs/mod_sse.so: $(SRCS) $(HEADERS)
	@command -v $(APXS) >/dev/null || { echo "apxs not found: run 'make deps' (Debian: apache2-dev)"; exit 1; }
	$(APXS) -c $(WARN) $(APXS_FLAGS) -o mod_sse.la $(SRCS) -lcrypto -lhiredis

# the example module of the stream API (examples/, README "C API")
examples: examples/.libs/mod_sse_example.so

examples/.libs/mod_sse_example.so: examples/mod_sse_example.c mod_sse.h
	cd examples && $(APXS) -c -Wc,-Wall -Wc,-Wextra -I.. mod_sse_example.c

deps:
	@sh scripts/install-deps.sh

install: all
	$(APXS) -i -n sse mod_sse.la
	install -m 644 mod_sse.h "$$($(APXS) -q INCLUDEDIR)/mod_sse.h"

activate: all
	$(APXS) -i -a -n sse mod_sse.la

# --- Debian package (README "Debian package"): dpkg-buildpackage writes its
# results next to the tree it builds and its objects into it, so it builds a
# copy of the sources in build/deb/src; the .deb lands in build/deb/.
DEB_DIR = build/deb

deb:
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/src/tests
	cp -a Makefile README.md $(SRCS) $(HEADERS) conf-examples debian \
	   $(DEB_DIR)/src/
	cp -a tests/unit $(DEB_DIR)/src/tests/
	cd $(DEB_DIR)/src && dpkg-buildpackage -us -uc -b
	@ls $(DEB_DIR)/libapache2-mod-sse_*.deb

UNIT     = $(wildcard tests/unit/*.c)
UNIT_DEPS = $(UNIT) $(wildcard tests/unit/*.h) $(PURE) $(HEADERS)
UNIT_CC  = cc -Wall -Wextra -Werror -g -O1 -DSSE_STORE_CHECK -I. \
           $$(apr-1-config --includes --cppflags)
UNIT_LD  = $$(apr-1-config --link-ld --libs) -lcrypto

build/unit_tests: $(UNIT_DEPS)
	@mkdir -p build
	$(UNIT_CC) -o $@ $(UNIT) $(PURE) $(UNIT_LD)

unit: build/unit_tests
	./build/unit_tests

# the whole suite: unit tests, pytest against a real httpd, the fault suite
# (which runs, and reports, even when pytest found a failure)
test: deps all unit
	@rc=0; $(PYTHON) -m pytest -q tests || rc=1; \
	$(PYTHON) -m pytest -q tests/faults || rc=1; exit $$rc

# the fault suite alone: crashes inside the store lock, restarts under load,
# connection churn, idle maintenance, hostile input; prints its figures
test-faults: deps all
	$(PYTHON) -m pytest -q -s tests/faults

# --- sanitizers (README "Development"): the unit tests and the module built
# with AddressSanitizer + UndefinedBehaviorSanitizer. The module is built by
# the test harness (tests/sse_env.py, SAN_FLAGS: keep in step) into
# build/variants/asan/ when SSE_SANITIZE=1.
SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer

build/asan/unit_tests: $(UNIT_DEPS)
	@mkdir -p build/asan
	$(UNIT_CC) $(SAN_FLAGS) -o $@ $(UNIT) $(PURE) $(UNIT_LD)

# the unit tests free all they allocate, so leaks are checked here
asan-unit: build/asan/unit_tests
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./build/asan/unit_tests

asan: deps asan-unit
	SSE_SANITIZE=1 $(PYTHON) -m pytest -q tests

# what CI runs: the normal build and suite, then the whole suite again
# against the sanitizer build (about 3 + 5 minutes on 2 cores, 9 with builds)
asan-ci: test asan

demo: deps all
	@sh scripts/demo.sh

# renews docs/demo.png from tests/test_185_browser_demo.py (port 8788)
demo-screenshot: deps all
	@sh scripts/demo-screenshot.sh

# --- fuzzing: libFuzzer targets in fuzz/ (scripts/fuzz.sh runs them) ---
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_TARGETS = json query event store
FUZZ_SAN     = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  = -g -O1 -Wall -Wextra -Werror $(FUZZ_SAN) -DSSE_STORE_CHECK \
               -I. -Itests/unit $$(apr-1-config --includes --cppflags)
FUZZ_UNITS   = sse_event.c sse_json.c sse_query.c sse_store.c \
               sse_store_clients.c sse_store_repair.c sse_store_check.c \
               tests/unit/read_check.c
FUZZ_OBJS    = $(patsubst %.c,build/fuzz/obj/%.o,$(notdir $(FUZZ_UNITS)))
FUZZ_BINS    = $(addprefix build/fuzz/fuzz_,$(FUZZ_TARGETS))
.SECONDARY: $(FUZZ_OBJS)

build/fuzz/obj/%.o: %.c $(HEADERS)
	@mkdir -p build/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/obj/%.o: tests/unit/%.c tests/unit/unit.h $(HEADERS)
	@mkdir -p build/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ_OBJS) tests/unit/unit.h \
                   $(HEADERS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) \
	   $$(apr-1-config --link-ld --libs)

fuzz-build: $(FUZZ_BINS)

# each target for FUZZ_SECONDS, one after the other
fuzz: deps fuzz-build
	@sh scripts/fuzz.sh $(FUZZ_SECONDS) seq $(FUZZ_TARGETS)

# what CI runs: a parallel build, then every target at once for
# FUZZ_SMOKE_SECONDS (under a minute in all on two cores)
fuzz-smoke: deps
	@$(MAKE) --no-print-directory -j4 fuzz-build
	@sh scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS) par $(FUZZ_TARGETS)

# --- benchmark: mod_sse vs Nchan vs better-sse (bench/README.md) ---
bench/work/sse_load: bench/sse_load.c
	@mkdir -p bench/work
	cc -O2 -Wall -Wextra -o $@ bench/sse_load.c -lpthread -lssl -lcrypto

bench:
	@sh bench/setup.sh
	@$(MAKE) --no-print-directory all bench/work/sse_load
	$(PYTHON) bench/selftest.py bench/work/sse_load
	$(PYTHON) bench/run.py
