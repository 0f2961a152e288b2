# Install rules and the KernelQuant CMake package (included by the root
# CMakeLists.txt once every target exists).
#
# Layout under the prefix:
#   bin/kq                                   the command-line tool
#   include/kq/*.hpp                         the public API (include/kq)
#   lib/libkq_*.a                            one static library per layer
#   lib/cmake/KernelQuant/                   KernelQuantConfig.cmake, targets, version
#   share/kernelquant/models/gpt2-tiny/      the demo model (`kq bench`'s default)
#
# Consumers: find_package(KernelQuant 0.1 REQUIRED) and link kq::kq, the same
# name the build tree defines, so add_subdirectory() and an installed package
# are interchangeable. The layers' own dependencies (fmt, nlohmann_json,
# OpenMP, PCRE2, utf8proc, oneDNN, and CUDA when the backend was built) are
# looked up again by the package (KernelQuantConfig.cmake.in).
include(CMakePackageConfigHelpers)

set(KQ_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/KernelQuant)

# The layers, the oneDNN link target and the warning flags (a PRIVATE link of
# every static layer, hence part of their exported link interface) form one
# export set; `kq` is the umbrella.
install(TARGETS kq ${KQ_LAYER_TARGETS} kq_dnnl kq_warnings
  EXPORT KernelQuantTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/kq DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS kq_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/models/gpt2-tiny DESTINATION ${CMAKE_INSTALL_DATADIR}/kernelquant/models)

install(EXPORT KernelQuantTargets NAMESPACE kq:: DESTINATION ${KQ_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/KernelQuantConfig.cmake.in
  ${PROJECT_BINARY_DIR}/KernelQuantConfig.cmake INSTALL_DESTINATION ${KQ_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/KernelQuantConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/KernelQuantConfig.cmake ${PROJECT_BINARY_DIR}/KernelQuantConfigVersion.cmake
  DESTINATION ${KQ_INSTALL_CMAKEDIR})
