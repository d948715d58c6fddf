# ngx_mesh: root Makefile.
#
#   make run        demo on loopback (registryd + nginx + 3 backends)
#   make test       unit tests (check) and integration tests (prove)
#   make test-asan  registryd and its unit tests under ASan + UBSan
#   make bench      benchmark scripts
#   make man        man pages (scdoc) into $(BUILD)/man
#   make deb        Debian packages into $(BUILD)/deb

BUILD     ?= build
CC        ?= cc
PKGS       = libmicrohttpd gnutls jansson sqlite3 yaml-0.1 libcurl zlib \
             libpcre2-8
CFLAGS    ?= -O2 -g
WARN       = -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
             -Wno-format-truncation
RD_CFLAGS  = $(CFLAGS) $(WARN) -std=gnu11 -D_GNU_SOURCE -Iregistryd -Icommon \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
RD_LIBS    = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)

# common/: the nginx-free code the three programs share: the wire format
# (snapshot, deltas, policy model), packed services, regexes, the balancer
# and ring cores, names, addresses, durations, the token file, the Accept
# header (the status location's negotiation); and, for
# registryd and registryctl only, allocation and the growable buffer
# (the module's own list is in config)
COMMON_SRCS = common/mesh_json.c common/mesh_snapshot.c \
              common/mesh_service.c common/mesh_policy.c \
              common/mesh_policy_dr.c common/mesh_policy_vs.c \
              common/mesh_policy_gw.c common/mesh_policy_shape.c \
              common/mesh_policy_pack.c common/mesh_regex.c \
              common/mesh_balancer.c common/mesh_units.c common/mesh_name.c \
              common/mesh_addr.c common/mesh_token.c common/mesh_alloc.c \
              common/mesh_buf.c common/mesh_accept.c common/mesh_locality.c
COMMON_HDRS = $(wildcard common/*.h)
COMMON_CHECK_SRCS = $(wildcard common/tests/check_*.c)

RD_LIB_SRCS = registryd/rd_log.c registryd/rd_util.c \
              registryd/rd_conf.c registryd/rd_store.c \
              registryd/rd_store_sqlite.c registryd/rd_store_etcd.c \
              registryd/rd_store_etcd_watch.c \
              registryd/rd_store_etcd_session.c \
              registryd/rd_etcd.c registryd/rd_registry.c \
              registryd/rd_instance.c registryd/rd_registry_writer.c \
              registryd/rd_registry_follow.c \
              registryd/rd_snapshot.c registryd/rd_metrics.c \
              registryd/rd_api.c registryd/rd_api_server.c \
              registryd/rd_api_tls.c \
              registryd/rd_api_read.c \
              registryd/rd_api_wait.c registryd/rd_api_write.c \
              registryd/rd_api_objects.c \
              registryd/rd_policy.c \
              registryd/rd_policy_yaml.c registryd/rd_policy_dr.c \
              registryd/rd_policy_vs.c registryd/rd_policy_vs_shape.c \
              registryd/rd_policy_obj.c registryd/rd_policy_delegate.c \
              registryd/rd_policy_gw.c \
              registryd/rd_events.c registryd/rd_auth.c
RD_LIB_SRCS += registryd/rd_check.c registryd/rd_health.c \
               registryd/rd_proxies.c $(COMMON_SRCS)
RD_HDRS     = $(wildcard registryd/*.h) $(COMMON_HDRS)
CHECK_SRCS  = $(wildcard registryd/tests/check_*.c)

MODULE_SRCS = config config.make \
              $(wildcard ngx_mesh_module/*.c ngx_mesh_module/*.h) \
              ngx_mesh_module/dashboard.html ngx_mesh_module/dashboard.sh \
              $(COMMON_SRCS) $(COMMON_HDRS)
MESH_CFLAGS     = $(CFLAGS) $(WARN) -std=gnu11 -Icommon

.PHONY: all deps registryd module test test-unit test-t test-asan run \
        bench clean fuzz fuzz-smoke man deb

all: deps registryd module

deps:
	@bash scripts/deps.sh

registryd: $(BUILD)/registryd $(BUILD)/registryctl

$(BUILD)/registryd: registryd/main.c $(RD_LIB_SRCS) $(RD_HDRS)
	@mkdir -p $(BUILD)
	$(CC) $(RD_CFLAGS) $(CPPFLAGS) $(LDFLAGS) -o $@ registryd/main.c \
	    $(RD_LIB_SRCS) $(RD_LIBS)

# registryctl: the CLI and the common/ code it shares with registryd
# (it includes nothing from registryd/)
CTL_SRCS = registryctl/registryctl.c registryctl/ctl_util.c \
           registryctl/ctl_http.c registryctl/ctl_show.c \
           registryctl/ctl_backup.c registryctl/ctl_objects.c \
           registryctl/ctl_register.c registryctl/ctl_run.c \
           registryctl/ctl_watch.c \
           common/mesh_units.c common/mesh_name.c common/mesh_addr.c \
           common/mesh_token.c common/mesh_alloc.c common/mesh_buf.c
CTL_CFLAGS = $(CFLAGS) $(WARN) -std=gnu11 -D_GNU_SOURCE -Iregistryctl \
             -Icommon $(shell pkg-config --cflags libcurl jansson 2>/dev/null)
CTL_LIBS   = $(shell pkg-config --libs libcurl jansson 2>/dev/null)

$(BUILD)/registryctl: $(CTL_SRCS) registryctl/ctl.h $(COMMON_HDRS)
	@mkdir -p $(BUILD)
	$(CC) $(CTL_CFLAGS) $(CPPFLAGS) $(LDFLAGS) -o $@ $(CTL_SRCS) $(CTL_LIBS)

$(BUILD)/check_registryd: $(CHECK_SRCS) $(RD_LIB_SRCS) $(RD_HDRS)
	@mkdir -p $(BUILD)
	$(CC) $(RD_CFLAGS) -o $@ $(CHECK_SRCS) $(RD_LIB_SRCS) $(RD_LIBS) \
	    $(CHECK_LIBS)

$(BUILD)/check_common: $(COMMON_CHECK_SRCS) $(COMMON_SRCS) $(COMMON_HDRS)
	@mkdir -p $(BUILD)
	$(CC) $(MESH_CFLAGS) -o $@ $(COMMON_CHECK_SRCS) $(COMMON_SRCS) \
	    $(CHECK_LIBS) -ljansson -lpcre2-8 -lz

module: $(BUILD)/ngx_http_mesh_module.so

$(BUILD)/ngx_http_mesh_module.so: $(MODULE_SRCS)
	bash scripts/build-module.sh $(BUILD)

test: all $(BUILD)/check_registryd $(BUILD)/check_common
	$(MAKE) --no-print-directory test-unit fuzz-smoke test-t

test-unit: $(BUILD)/check_registryd $(BUILD)/check_common
	CK_DEFAULT_TIMEOUT=60 $(BUILD)/check_common
	CK_DEFAULT_TIMEOUT=60 $(BUILD)/check_registryd

test-t:
	MESH_BUILD=$(abspath $(BUILD)) prove -It/lib t/

# registryd and its unit tests under AddressSanitizer + UBSan, in their own
# build folder; the daemon's integration tests run against that build too,
# and the module's against nginx itself and the module built with the
# sanitizers (scripts/build-nginx-asan.sh).
test-asan: deps module
	$(MAKE) --no-print-directory BUILD=build/asan \
	    CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	    build/asan/registryd build/asan/registryctl build/asan/check_registryd \
	    build/asan/check_common
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    CK_FORK=no CK_DEFAULT_TIMEOUT=120 build/asan/check_common
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    CK_FORK=no CK_DEFAULT_TIMEOUT=120 build/asan/check_registryd
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    MESH_BUILD=$(abspath build/asan) MESH_MODULE=$(abspath $(BUILD))/ngx_http_mesh_module.so \
	    prove -It/lib t/registryd_*.t t/registryctl*.t
	bash scripts/build-nginx-asan.sh build/asan
	UBSAN_OPTIONS=print_stacktrace=1 MESH_BUILD=$(abspath build/asan) \
	    MESH_NGINX=$(abspath build/asan)/nginx \
	    MESH_MODULE=$(abspath build/asan)/ngx_http_mesh_module.so \
	    prove -It/lib t/module_load.t t/mesh_*.t t/stream_*.t

# libFuzzer targets (clang, with ASan and UBSan) for every parser that
# takes outside input: fuzz/fuzz_NAME.c, seeds in fuzz/corpus/NAME/.
# make fuzz runs each for FUZZ_TIME seconds (or FUZZ_RUNS executions);
# make test a smoke of each (FUZZ_SMOKE seconds). What they find goes to $(BUILD)/fuzz/; the corpus
# in the tree is read, never written.
FUZZ_CC      = clang
FUZZ_TARGETS = snapshot policies instance policy_yaml conf url accept
FUZZ_TIME   ?= 60
FUZZ_RUNS   ?=
FUZZ_SMOKE  ?= 3
FUZZ_CFLAGS  = -g -O1 -fno-omit-frame-pointer \
               -fsanitize=address,undefined -fno-sanitize-recover=all \
               $(WARN) -Wno-unknown-warning-option -std=gnu11 -D_GNU_SOURCE \
               -Iregistryd -Icommon \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_OBJS    = $(RD_LIB_SRCS:%.c=$(BUILD)/fuzz/obj/%.o)
FUZZ_BINS    = $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)

.SECONDARY: $(FUZZ_OBJS)

$(BUILD)/fuzz/obj/%.o: %.c $(RD_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) \
	    $(RD_LIBS)

fuzz: deps $(FUZZ_BINS)
	@for f in $(FUZZ_TARGETS); do \
	    bash scripts/fuzz-run $(BUILD) $$f $(FUZZ_TIME) $(FUZZ_RUNS) \
	        || exit 1; \
	done

fuzz-smoke: $(FUZZ_BINS)
	@for f in $(FUZZ_TARGETS); do \
	    bash scripts/fuzz-run $(BUILD) $$f $(FUZZ_SMOKE) || exit 1; \
	done

# man pages: man/NAME.SECTION.scd (scdoc) into $(BUILD)/man/NAME.SECTION
MAN_PAGES = $(patsubst man/%.scd,$(BUILD)/man/%,$(wildcard man/*.scd))

man: $(MAN_PAGES)

$(BUILD)/man/%: man/%.scd
	@mkdir -p $(BUILD)/man
	scdoc < $< > $@

# the Debian packages (debian/): libnginx-mod-http-mesh and
# ngx-mesh-registryd, built from a copy of the tree in $(BUILD)/deb,
# where dpkg-buildpackage leaves them; again only when a file changed
deb: deps
	bash scripts/build-deb.sh $(BUILD)

run: all
	bash scripts/run-demo.sh $(BUILD)

bench: all
	bash scripts/bench-registryd $(BUILD)
	perl scripts/bench-propagation $(BUILD)
	bash scripts/bench $(BUILD)
	bash scripts/bench-cost $(BUILD)
	bash scripts/bench-stream $(BUILD)
	bash scripts/bench-failover $(BUILD)
	perl scripts/bench-scale $(BUILD)
	perl scripts/bench-status $(BUILD)

clean:
	rm -rf $(BUILD)
