# Makefile - builds mod_sse with apxs; runs its tests and the demo server.
APXS    ?= apxs
PYTHON  ?= /usr/bin/python3
SRCS     = mod_sse.c sse_config.c sse_event.c sse_json.c sse_query.c \
           sse_store.c sse_store_clients.c sse_store_repair.c \
           sse_store_check.c sse_notify.c sse_fanout.c sse_publish.c \
           sse_location.c sse_access.c sse_jwt.c sse_stream.c sse_admin.c
HEADERS  = $(wildcard *.h)
WARN     = -Wc,-Wall -Wc,-Wextra -Wc,-std=gnu99 \
           -Wc,-Werror=implicit-function-declaration
# units without httpd headers, linked into the C unit tests
PURE     = sse_event.c sse_json.c sse_query.c sse_store.c sse_store_clients.c \
           sse_store_repair.c sse_store_check.c sse_jwt.c

.PHONY: all deps install activate unit test demo clean bench fuzz \
        fuzz-build fuzz-smoke

all: .libs/mod_sse.so

.libs/mod_sse.so: $(SRCS) $(HEADERS)
	@command -v $(APXS) >/dev/null || { echo "apxs not found: run 'make deps' (Debian: apache2-dev)"; exit 1; }
	$(APXS) -c $(WARN) -o mod_sse.la $(SRCS) -lcrypto

deps:
	@sh scripts/install-deps.sh

install: all
	$(APXS) -i -n sse mod_sse.la

activate: all
	$(APXS) -i -a -n sse mod_sse.la

UNIT     = $(wildcard tests/unit/*.c)

build/unit_tests: $(UNIT) $(wildcard tests/unit/*.h) $(PURE) $(HEADERS)
	@mkdir -p build
	cc -Wall -Wextra -Werror -g -O1 -DSSE_STORE_CHECK -I. \
	   $$(apr-1-config --includes --cppflags) \
	   -o $@ $(UNIT) $(PURE) $$(apr-1-config --link-ld --libs) -lcrypto

unit: build/unit_tests
	./build/unit_tests

test: deps all unit
	$(PYTHON) -m pytest -q tests

demo: deps all
	@sh scripts/demo.sh

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
fuzz: fuzz-build
	@sh scripts/fuzz.sh $(FUZZ_SECONDS) seq $(FUZZ_TARGETS)

# what CI runs: a parallel build, then every target at once for
# FUZZ_SMOKE_SECONDS (under a minute in all on two cores)
fuzz-smoke:
	@$(MAKE) --no-print-directory -j4 fuzz-build
	@sh scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS) par $(FUZZ_TARGETS)

# --- benchmark: mod_sse vs Nchan vs better-sse (bench/README.md) ---
bench/work/sse_load: bench/sse_load.c
	@mkdir -p bench/work
	cc -O2 -Wall -Wextra -o $@ bench/sse_load.c -lpthread

bench:
	@sh bench/setup.sh
	@$(MAKE) --no-print-directory all bench/work/sse_load
	$(PYTHON) bench/selftest.py bench/work/sse_load
	$(PYTHON) bench/run.py
