# ctest install_find_package: installs the build into a scratch prefix, builds
# tests/install/consumer against it (find_package(KernelQuant), kq::kq, the
# README's example examples/quickstart.cpp, and a LinearTransform from the
# installed headers), runs them (quickstart on the installed demo model), and
# runs the installed `kq info`. Fails on any step's non-zero exit.
#   cmake -DBUILD_DIR=... -DWORK_DIR=... -DSOURCE_DIR=... -DGENERATOR=... -P check_install.cmake
foreach(v BUILD_DIR WORK_DIR SOURCE_DIR GENERATOR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_install.cmake: -D${v}= is required")
  endif()
endforeach()

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "${what}: exit ${rc}\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install check failed at: ${what}")
  endif()
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
run_step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f include/kq/kq.hpp lib/cmake/KernelQuant/KernelQuantConfig.cmake
          share/kernelquant/models/gpt2-tiny/model.safetensors)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "install check: ${prefix}/${f} was not installed")
  endif()
endforeach()
run_step("configure the consumer" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer -B ${WORK_DIR}/consumer
  -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix}
  -DKQ_EXAMPLE_SOURCE=${SOURCE_DIR}/examples/quickstart.cpp
  -DKQ_EXAMPLE_MODEL_DIR=${prefix}/share/kernelquant/models/gpt2-tiny)
run_step("build the consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run_step("run the consumer" ${WORK_DIR}/consumer/quickstart)
run_step("run the consumer's LinearTransform" ${WORK_DIR}/consumer/linear_transform)
run_step("installed kq info" ${prefix}/bin/kq info)
