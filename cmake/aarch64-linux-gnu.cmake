# Cross build of ionest for aarch64 Linux on a Debian 12 x86-64 host (docs/arm64.md; `make arm64-build`).
# Needs scripts/setup-arm64.sh: g++-aarch64-linux-gnu and the :arm64 multiarch -dev packages, which
# live in /usr/lib/aarch64-linux-gnu (CMake's package and library search uses CMAKE_LIBRARY_ARCHITECTURE).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Only the arm64 libraries: pkg-config must not see the host's .pc files.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# libfdt-dev:arm64 does not co-install with libfdt-dev:amd64 (it replaces it), so there is no arm64
# libfdt.so link symlink: link the runtime library of libfdt1:arm64 directly. The headers (from the
# amd64 -dev package, in /usr/include) are architecture independent.
set(LIBFDT_LIBRARY /usr/lib/aarch64-linux-gnu/libfdt.so.1 CACHE FILEPATH "libfdt for aarch64")

# Cross-built tests run under qemu-aarch64 when it is installed (qemu-user); else ctest cannot run them.
find_program(IONEST_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(IONEST_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${IONEST_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
endif()
