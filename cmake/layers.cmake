# kq_add_layer(NAME DEPS ... [SUBDIRS ...])
# Builds src/NAME/*.cpp (and src/NAME/<subdir>/*.cpp) into the static library
# kq_NAME. Files named *_avx2.cpp, *_avx512.cpp, *_avx512vnni.cpp and
# *_avx512bf16.cpp get the matching -m flags (and only they do), so one binary
# carries every ISA path and picks one at run time (src/kernels/cpu/dispatch).
set(KQ_LAYER_TARGETS "")
set(KQ_FLAGS_AVX2       -mavx2 -mfma -mf16c -mbmi2)
set(KQ_FLAGS_AVX512     ${KQ_FLAGS_AVX2} -mavx512f -mavx512bw -mavx512vl -mavx512dq)
set(KQ_FLAGS_AVX512VNNI ${KQ_FLAGS_AVX512} -mavx512vnni)
set(KQ_FLAGS_AVX512BF16 ${KQ_FLAGS_AVX512} -mavx512bf16)

function(kq_add_layer NAME)
  cmake_parse_arguments(L "" "" "DEPS;SUBDIRS" ${ARGN})
  set(dir ${PROJECT_SOURCE_DIR}/src/${NAME})
  file(GLOB srcs CONFIGURE_DEPENDS ${dir}/*.cpp)
  foreach(sd IN LISTS L_SUBDIRS)
    file(GLOB more CONFIGURE_DEPENDS ${dir}/${sd}/*.cpp)
    list(APPEND srcs ${more})
  endforeach()
  if(srcs)
    add_library(kq_${NAME} STATIC ${srcs})
    set(vis PUBLIC)
  else()
    add_library(kq_${NAME} INTERFACE)
    set(vis INTERFACE)
  endif()
  target_include_directories(kq_${NAME} ${vis}
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/src>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(kq_${NAME} ${vis} ${L_DEPS})
  if(srcs)
    target_link_libraries(kq_${NAME} PRIVATE kq_warnings)
    # PRIVATE: only kq::version() / build_type() read them; consumers of the package must not get them.
    target_compile_definitions(kq_${NAME} PRIVATE
      KQ_VERSION="${PROJECT_VERSION}" KQ_BUILD_TYPE="${CMAKE_BUILD_TYPE}")
  endif()
  foreach(f IN LISTS srcs)
    foreach(isa AVX512VNNI AVX512BF16 AVX512 AVX2)
      string(TOLOWER ${isa} suffix)
      if(f MATCHES "_${suffix}\\.cpp$")
        set_source_files_properties(${f} PROPERTIES COMPILE_OPTIONS "${KQ_FLAGS_${isa}}")
        break()
      endif()
    endforeach()
  endforeach()
  set(KQ_LAYER_TARGETS ${KQ_LAYER_TARGETS} kq_${NAME} PARENT_SCOPE)
endfunction()
