# aetherConfig.cmake — find_package(aether) for an installed libaether
# (`cmake --install`, `make install`, or Debian's libaether-dev).
#
#   find_package(aether 0.1 REQUIRED)
#   target_link_libraries(app PRIVATE aether::aether)         # libaether.so.0
#   target_link_libraries(app PRIVATE aether::aether_static)  # libaether.a, where installed
#
# Both targets carry the include directory (aether.h, and aether.hpp for C++17).
# Paths are found from this file's place, so the installed tree may move:
# it lives in <libdir>/cmake/aether, whatever <libdir> is (lib, lib64,
# lib/x86_64-linux-gnu).

get_filename_component(_aether_libdir "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
find_path(_aether_includedir aether.h
  PATHS "${_aether_libdir}/../include" "${_aether_libdir}/../../include"
  NO_DEFAULT_PATH NO_CACHE)
if(NOT _aether_includedir OR NOT EXISTS "${_aether_libdir}/libaether.so.0")
  set(aether_FOUND FALSE)
  set(aether_NOT_FOUND_MESSAGE
      "aether: libaether.so.0 in ${_aether_libdir} or aether.h beside it not found (a partial install?)")
  return()
endif()
get_filename_component(_aether_includedir "${_aether_includedir}" ABSOLUTE)

if(NOT TARGET aether::aether)
  add_library(aether::aether SHARED IMPORTED)
  set_target_properties(aether::aether PROPERTIES
    IMPORTED_LOCATION "${_aether_libdir}/libaether.so.0"
    IMPORTED_SONAME "libaether.so.0"
    INTERFACE_INCLUDE_DIRECTORIES "${_aether_includedir}")
endif()

if(EXISTS "${_aether_libdir}/libaether.a" AND NOT TARGET aether::aether_static)
  # What a static Rust library needs from the system (rustc's native-static-libs).
  find_package(Threads REQUIRED)
  add_library(aether::aether_static STATIC IMPORTED)
  set_target_properties(aether::aether_static PROPERTIES
    IMPORTED_LOCATION "${_aether_libdir}/libaether.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_aether_includedir}"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;gcc_s;util;rt;m;dl")
endif()

set(aether_INCLUDE_DIRS "${_aether_includedir}")
set(aether_LIBRARIES aether::aether)
unset(_aether_libdir)
unset(_aether_includedir)
