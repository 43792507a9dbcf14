# mailroute: thin wrapper around scripts/install-deps, CMake/Ninja and the test runners.
#   make run    install what is missing, build, start the demo server in the foreground
#   make test   install, build with ASan+UBSan and -Werror, run every test
SHELL := /bin/bash
PYTHON := /usr/bin/python3
JOBS ?= $(shell nproc)

.PHONY: all build deps run test unit e2e fuzz fuzz-check checksrc clean bench install
PREFIX ?= /usr/local

all: build

deps:
	@scripts/install-deps

build/build.ninja:
	cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps build/build.ninja
	ninja -C build -j $(JOBS)

run: build
	@scripts/demo-setup
	exec build/mailroute serve -c var/mailroute.yaml

build-test/build.ninja:
	cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMR_SANITIZE=ON -DMR_WERROR=ON

build-fuzz/build.ninja:
	CC=clang-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMR_FUZZ=ON

checksrc:
	@tools/checksrc

unit: deps build-test/build.ninja
	ninja -C build-test -j $(JOBS)
	ctest --test-dir build-test --output-on-failure -j $(JOBS)

# Only the fuzz targets (and what they link) are built with clang.
FUZZ_TARGETS = $$(ninja -C build-fuzz -t targets all | sed -n 's/^\(fuzz-[a-z0-9-]*\): .*/\1/p' | sort -u)

fuzz-check: deps build-fuzz/build.ninja
	ninja -C build-fuzz -j $(JOBS) $(FUZZ_TARGETS)
	tests/fuzz/run-corpus build-fuzz

fuzz: deps build-fuzz/build.ninja
	ninja -C build-fuzz -j $(JOBS) $(FUZZ_TARGETS)
	tests/fuzz/run-fuzz build-fuzz $${FUZZ_SECONDS:-60}

e2e: deps build-test/build.ninja
	ninja -C build-test -j $(JOBS)
	MAILROUTE_BIN=$(CURDIR)/build-test/mailroute $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

test: deps checksrc unit fuzz-check e2e

bench: build
	bench/smtp-accept

# mailroute, plus the Postfix-style entry points for local programs: sendmail and mailq.
install: build
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)/etc/mailroute
	install -m 0755 build/mailroute $(DESTDIR)$(PREFIX)/sbin/mailroute
	ln -sf mailroute $(DESTDIR)$(PREFIX)/sbin/sendmail
	ln -sf mailroute $(DESTDIR)$(PREFIX)/sbin/mailq

clean:
	rm -rf build build-test build-fuzz
