# ionest top-level driver.
#   make run    boot the default guest (interactive busybox shell on the console)
#   make test   everything CI runs; last line: "N passed, N failed[, N skipped]"
#   make bench-guest  guest boot time vtd vs none + the guest suites' "# bench:" numbers
#   make arm64-run    arm64: QEMU TCG host with EL2 -> KVM -> ionest -> nested arm64 guest (docs/arm64.md)
# Variables: IOMMU=auto|vtd|none  CPUS=2  MEMORY=256M  JOBS=$(nproc)  IONEST_CACHE=~/.cache/ionest
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

IONEST_CACHE ?= $(HOME)/.cache/ionest
export IONEST_CACHE
BUILD ?= build
FUZZ_BUILD ?= build-fuzz
JOBS ?= $(shell nproc)
# vtd: pass --iommu=vtd; none: no IOMMU option; auto: vtd if `ionest --help` mentions --iommu.
IOMMU ?= auto
CPUS ?= 2
MEMORY ?= 256M
# Appended to ionest's own defaults (console, fast-boot and CPUID-policy parameters).
# RCU stall reports are false alarms at ~1M emulated instructions/s.
CMDLINE_EXTRA ?= rcupdate.rcu_cpu_stall_suppress=1
# Test devices of the default guest (its demo drives them: guest-tests/default/demo.sh).
RUN_DEVICES ?= --device pci-epf-test --device dmatest

KERNEL := $(IONEST_CACHE)/kernel/current/vmlinux
INITRD_DIR := $(IONEST_CACHE)/initramfs
DEBIAN_BZIMAGE := $(IONEST_CACHE)/debian/current/vmlinuz
# x86 suites: guest-tests/suites/* whose suite.conf has no ARCHES= line or names x86.
SUITES := $(shell for d in guest-tests/suites/*/; do c="$$d/suite.conf"; \
  if ! grep -q '^ARCHES=' "$$c" 2>/dev/null || grep -q '^ARCHES=.*x86' "$$c"; then basename "$$d"; fi; done)
ARM64_BUILD ?= build-arm64
ARM64_JOBS ?= 2
ARM64_KERNEL ?= built
ARM64_CPUS ?= 2
ARM64_GUEST_CMDLINE ?=
ARM64_TIMEOUT ?= 900
ARM64_UNIT_TESTS := vmm_arm64_image_loader_test vmm_arm64_fdt_builder_test vmm_arm64_vcpu_test
ifeq ($(ARM64_KERNEL),debian)
ARM64_IMAGE := $(IONEST_CACHE)/arm64/debian/current/Image
# Debian's virtio_blk is a module: no virtio-blk round trip (-D).
ARM64_RUN_FLAGS := -D
else
ARM64_IMAGE := $(IONEST_CACHE)/arm64/kernel/current/Image
endif
ARM64_BUSYBOX := $(IONEST_CACHE)/arm64/busybox/bin/busybox
# Suites whose suite.conf has ARCHES=... arm64 (guest-tests/CMakeLists.txt registers guest_arm64_<suite>).
ARM64_SUITES := $(notdir $(patsubst %/suite.conf,%,$(shell grep -l '^ARCHES=.*arm64' guest-tests/suites/*/suite.conf)))
CMAKE_VARS := -DIONEST_GUEST_KERNEL=$(KERNEL) -DIONEST_GUEST_INITRD_DIR=$(INITRD_DIR) \
  -DIONEST_DEBIAN_BZIMAGE=$(DEBIAN_BZIMAGE) \
  -DIONEST_ARM64_VMM=$(CURDIR)/$(ARM64_BUILD)/vmm/arch/arm64/ionest -DIONEST_ARM64_KERNEL=$(ARM64_IMAGE) \
  -DIONEST_ARM64_INITRD_DIR=$(INITRD_DIR)/arm64 \
  "-DIONEST_GUEST_CMDLINE_EXTRA=$(CMDLINE_EXTRA)"

# Guest payload build scripts (each an idempotent no-op when up to date); those present run in order.
PAYLOAD_SCRIPTS := guest-tests/modules/build-modules.sh guest-tests/programs/build-programs.sh \
  guest-tests/pcitest/build-pcitest.sh guest-tests/kselftests/build-kselftests.sh

.PHONY: qemu-host-initramfs test-opt-in all setup kernel debian-kernel guest-payload passthrough-payload initramfs configure build fuzz-build run test bench-guest
all: build

setup:
	scripts/setup.sh

kernel:
	guest-tests/build-kernel.sh

debian-kernel:
	scripts/fetch-debian-kernel.sh

# Static programs, modules and kselftests for the guest, in $(IONEST_CACHE)/guest-{bin,modules,ksft}/.
guest-payload: kernel
	for s in $(PAYLOAD_SCRIPTS); do \
	  if [[ -x "$$s" ]]; then echo "guest-payload: $$s"; "$$s"; \
	  elif [[ -e "$$s" ]]; then echo "guest-payload: $$s"; bash "$$s"; fi; \
	done

# The passthrough test bed runs ionest's own code inside the guest: it needs the CMake build.
passthrough-payload: build
	guest-tests/passthrough/bundle-testbed.sh $(BUILD)

# default.cpio (interactive shell) + one <suite>.cpio per guest-tests/suites/<suite>/ (with its payload.txt).
initramfs: guest-payload passthrough-payload
	mkdir -p $(INITRD_DIR)
	guest-tests/initramfs/build-initramfs.sh -o $(INITRD_DIR)/default.cpio -d guest-tests/default
	for s in $(SUITES); do \
	  guest-tests/initramfs/build-initramfs.sh -o $(INITRD_DIR)/$$s.cpio -t guest-tests/suites/$$s; \
	done

# QEMU-TCG host suite (guest-tests/qemu-host, CTest guest_qemu-host, in `make test`): ionest's
# passthrough code against a real 6.12 kernel, no KVM needed. Bundles the checks binary with its
# libraries and builds $(INITRD_DIR)/qemu-host.cpio.
qemu-host-initramfs: build
	guest-tests/qemu-host/bundle.sh $(BUILD) $(INITRD_DIR)/qemu-host.cpio

configure:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_VARS)

build: configure
	ninja -C $(BUILD) -j$(JOBS)

# libFuzzer targets with clang-14 under ASan+UBSan; only the fuzzers are built here.
fuzz-build:
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DIONEST_FUZZ=ON -DIONEST_SANITIZE=ON -DCMAKE_C_COMPILER=clang-14 \
	  -DCMAKE_CXX_COMPILER=clang++-14 $(CMAKE_VARS)
	targets="$$(ctest --test-dir $(FUZZ_BUILD) -N -L fuzz | sed -n 's/^ *Test *#[0-9]*: *//p')"; \
	if [[ -n "$$targets" ]]; then ninja -C $(FUZZ_BUILD) -j$(JOBS) $$targets; \
	else echo "fuzz-build: no fuzz targets registered"; fi

run: setup kernel initramfs build
	vmm="$$(cat $(BUILD)/ionest-path.txt 2>/dev/null || true)"; \
	[[ -x "$$vmm" ]] || { echo "make run: the ionest binary is not built (no 'ionest' CMake target)"; exit 1; }; \
	iommu=(); \
	case "$(IOMMU)" in \
	  vtd) iommu=(--iommu=vtd) ;; \
	  none) ;; \
	  auto) help="$$("$$vmm" --help 2>&1 || true)"; [[ "$$help" != *--iommu* ]] || iommu=(--iommu=vtd) ;; \
	  *) echo "make run: IOMMU must be auto, vtd or none"; exit 1 ;; \
	esac; \
	set -x; \
	exec "$$vmm" --kernel $(KERNEL) --initrd $(INITRD_DIR)/default.cpio \
	  --cmdline "console=ttyS0 $(CMDLINE_EXTRA)" --memory $(MEMORY) --cpus $(CPUS) --console "$${iommu[@]}" $(RUN_DEVICES)

# Boot time to /init with --iommu=vtd vs none (N=2 each, alternating) + the guest suites' "# bench:"
# lines from $(BUILD)/guest-results (run `ctest --test-dir $(BUILD) -L guest` first for those).
bench-guest: kernel initramfs build
	scripts/bench-guest.sh -b $(BUILD)

# Guest suites marked OPT_IN=1 in their suite.conf (not part of `make test` until they have passed on
# a machine with KVM): OPT_IN_SUITES=passthrough make test-opt-in
OPT_IN_SUITES ?= passthrough
test-opt-in: setup kernel initramfs build
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_VARS) "-DIONEST_OPT_IN_SUITES=$(OPT_IN_SUITES)"
	rc=0; for s in $(OPT_IN_SUITES); do ctest --test-dir $(BUILD) -R "^guest_$$s\$$" -V || rc=1; done; \
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_VARS) -DIONEST_OPT_IN_SUITES= >/dev/null; exit $$rc

# Runs every label in $(BUILD) and the fuzzers in $(FUZZ_BUILD), then prints one
# line summing CTest tests and guest KTAP cases (scripts/summarize-tests.py).
test: setup kernel debian-kernel initramfs build fuzz-build qemu-host-initramfs arm64-prereqs
	rm -f $(BUILD)/guest-results/*.summary $(BUILD)/ctest-junit.xml $(FUZZ_BUILD)/ctest-junit.xml \
	  $(ARM64_BUILD)/ctest-junit.xml
	rc=0; junit=($(BUILD)/ctest-junit.xml $(FUZZ_BUILD)/ctest-junit.xml); \
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS) --output-junit $(CURDIR)/$(BUILD)/ctest-junit.xml || rc=1; \
	ctest --test-dir $(FUZZ_BUILD) -L fuzz -j$(JOBS) --output-on-failure \
	  --output-junit $(CURDIR)/$(FUZZ_BUILD)/ctest-junit.xml || rc=1; \
	if [[ -f $(ARM64_BUILD)/CTestTestfile.cmake ]]; then \
	  ctest --test-dir $(ARM64_BUILD) -R '^vmm_arm64_' --output-on-failure \
	    --output-junit $(CURDIR)/$(ARM64_BUILD)/ctest-junit.xml || rc=1; \
	  junit+=($(ARM64_BUILD)/ctest-junit.xml); \
	fi; \
	scripts/summarize-tests.py --guest-results $(BUILD)/guest-results "$${junit[@]}" || rc=1; \
	exit $$rc

# --- arm64 (docs/arm64.md): the arm64 suites and unit tests are part of `make test` ---
# arm64-build: cross-built aarch64 ionest in $(ARM64_BUILD); arm64-test: its unit tests under qemu-aarch64;
# arm64-kernel: the arm64 kernel (linux-source-6.12 + guest-tests/arm64/kernel.config, or
# ARM64_KERNEL=debian: Debian's prebuilt one); arm64-run: QEMU TCG arm64 host with EL2 -> its KVM ->
# ionest -> nested arm64 guest.
# A missing package or a QEMU without EL2 is a skip with its reason (exit 0), never a silent pass.
.PHONY: arm64-setup arm64-build arm64-test arm64-kernel arm64-run arm64-initramfs arm64-prereqs arm64-shell
arm64-setup:
	scripts/setup-arm64.sh

arm64-build: arm64-setup
	cmake -S . -B $(ARM64_BUILD) -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
	nice -n 10 ninja -C $(ARM64_BUILD) -j$(ARM64_JOBS) ionest $(ARM64_UNIT_TESTS)

# The arm64 unit tests, cross-built, run under qemu-aarch64 (no KVM needed).
arm64-test: arm64-build
	ctest --test-dir $(ARM64_BUILD) -R '^vmm_arm64_' --output-on-failure

arm64-kernel: arm64-setup
	if [[ "$(ARM64_KERNEL)" == debian ]]; then guest-tests/arm64/fetch-debian-kernel.sh; \
	else JOBS=$(ARM64_JOBS) NICE=10 guest-tests/arm64/build-kernel.sh; fi

# The arm64 suites' initramfs images (arm64 busybox, the arm64 kselftests, guest modules and programs):
# $(INITRD_DIR)/arm64/<suite>.cpio.
arm64-initramfs: arm64-kernel
	ARCH=arm64 guest-tests/kselftests/build-kselftests.sh
	ARCH=arm64 guest-tests/pcitest/build-pcitest.sh
	ARCH=arm64 guest-tests/modules/build-modules.sh
	ARCH=arm64 guest-tests/programs/build-programs.sh
	mkdir -p $(INITRD_DIR)/arm64
	for s in $(ARM64_SUITES); do \
	  BUSYBOX=$(ARM64_BUSYBOX) guest-tests/initramfs/build-initramfs.sh -o $(INITRD_DIR)/arm64/$$s.cpio \
	    -t guest-tests/suites/$$s; \
	done

# What `make test` needs for the arm64 suites and unit tests. A machine that cannot run them at all
# (scripts/setup-arm64.sh exit 77: no EL2 in QEMU, packages unavailable) builds nothing and the
# suites skip with the reason.
arm64-prereqs:
	rc=0; scripts/setup-arm64.sh || rc=$$?; \
	if ((rc == 77)); then echo "arm64-prereqs: SKIP (reason above): the arm64 suites will skip"; exit 0; fi; \
	((rc == 0)) || exit $$rc; \
	$(MAKE) --no-print-directory arm64-build arm64-kernel arm64-initramfs

# Interactive: the arm64 guest's busybox shell on this terminal (Ctrl-A x quits ionest, Ctrl-] x QEMU).
ARM64_SHELL_ARGS ?= --iommu=virtio
arm64-shell: arm64-prereqs
	BUSYBOX=$(ARM64_BUSYBOX) guest-tests/initramfs/build-initramfs.sh -o $(INITRD_DIR)/arm64/default.cpio
	guest-tests/arm64/arm64-vmm.sh --interactive --ionest $(ARM64_BUILD)/vmm/arch/arm64/ionest \
	  --host-kernel $(ARM64_IMAGE) --kernel $(ARM64_IMAGE) --initrd $(INITRD_DIR)/arm64/default.cpio \
	  --cpus $(ARM64_CPUS) --memory $(MEMORY) --cmdline "$(ARM64_GUEST_CMDLINE)" $(ARM64_SHELL_ARGS)

arm64-run:
	rc=0; scripts/setup-arm64.sh || rc=$$?; \
	if ((rc == 77)); then echo "arm64-run: SKIP (reason above)"; exit 0; fi; ((rc == 0)) || exit $$rc; \
	$(MAKE) --no-print-directory arm64-build arm64-kernel; \
	rc=0; guest-tests/arm64/run-arm64.sh -b $(ARM64_BUILD) -k $(ARM64_IMAGE) -c $(ARM64_CPUS) -t $(ARM64_TIMEOUT) \
	  -a "$(ARM64_GUEST_CMDLINE)" $(ARM64_RUN_FLAGS) || rc=$$?; \
	if ((rc == 77)); then echo "arm64-run: SKIP (reason above)"; exit 0; fi; exit $$rc
