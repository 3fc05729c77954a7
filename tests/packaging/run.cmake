# Packaging proof, run by ctest as `cmake -P`: builds tests/packaging/consumer.cpp the way a user
# would use mpp, and fails unless the program builds, runs and prints "mpp consumer ok".
#   MODE=find_package      cmake --install into a fresh prefix, then find_package(mpp) + mpp::mpp
#   MODE=pkg-config        the same install, then `pkg-config --cflags --libs mpp` and a bare compiler
#   MODE=add_subdirectory  the consumer embeds the source tree with add_subdirectory
#   MODE=fetchcontent      the consumer pulls the source tree with FetchContent
# Inputs (-D): MODE, MPP_SOURCE_DIR, WORK_DIR (wiped first), CXX_COMPILER, GENERATOR, MPP_VERSION.
cmake_minimum_required(VERSION 3.20)

foreach(input MODE MPP_SOURCE_DIR WORK_DIR CXX_COMPILER GENERATOR MPP_VERSION)
  if(NOT DEFINED ${input})
    message(FATAL_ERROR "packaging/run.cmake: -D${input}=... is required")
  endif()
endforeach()

set(here ${CMAKE_CURRENT_LIST_DIR})
set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

# Runs one command; on failure prints what it said and stops the test.
function(step description)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${description} failed (${status}):\n${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${description}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

function(install_mpp)
  step("configure mpp for install"
    ${CMAKE_COMMAND} -S ${MPP_SOURCE_DIR} -B ${WORK_DIR}/mpp-build -G ${GENERATOR}
      -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_INSTALL_PREFIX=${prefix}
      -DMPP_BUILD_TESTS=OFF -DMPP_BUILD_EXAMPLES=OFF -DMPP_BUILD_BENCHMARKS=OFF)
  step("install mpp into ${prefix}" ${CMAKE_COMMAND} --install ${WORK_DIR}/mpp-build)
  foreach(expected include/mpp/mpp.hpp include/mpp/serializer.hpp share/pkgconfig/mpp.pc)
    if(NOT EXISTS ${prefix}/${expected})
      message(FATAL_ERROR "cmake --install did not install ${expected}")
    endif()
  endforeach()
  file(GLOB_RECURSE config_files ${prefix}/*/mppConfig.cmake ${prefix}/*/mppConfigVersion.cmake ${prefix}/*/mppTargets.cmake)
  list(LENGTH config_files config_count)
  if(NOT config_count EQUAL 3)
    message(FATAL_ERROR "expected mppConfig.cmake, mppConfigVersion.cmake and mppTargets.cmake, found: ${config_files}")
  endif()
endfunction()

function(check_consumer program)
  step("run the consumer" ${program})
  if(NOT step_output MATCHES "mpp consumer ok")
    message(FATAL_ERROR "the consumer ran but did not report success:\n${step_output}")
  endif()
  # Every way of consuming mpp links with -z now (MPP_BIND_NOW), so forked workers bind nothing.
  find_program(READELF_EXECUTABLE readelf)
  if(READELF_EXECUTABLE)
    step("readelf -d the consumer" ${READELF_EXECUTABLE} -d ${program})
    if(NOT step_output MATCHES "BIND_NOW|Flags:[^\n]* NOW")
      message(FATAL_ERROR "the ${MODE} consumer is not linked with -z now:\n${step_output}")
    endif()
  endif()
endfunction()

function(build_consumer project_dir)
  step("configure the ${MODE} consumer"
    ${CMAKE_COMMAND} -S ${project_dir} -B ${WORK_DIR}/consumer-build -G ${GENERATOR}
      -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix} -DMPP_SOURCE_DIR=${MPP_SOURCE_DIR} ${ARGN})
  step("build the ${MODE} consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
  check_consumer(${WORK_DIR}/consumer-build/app)
endfunction()

if(MODE STREQUAL "find_package")
  install_mpp()
  build_consumer(${here}/find_package)
  # A version the package does not provide must be refused by mppConfigVersion.cmake.
  file(WRITE ${WORK_DIR}/too-new/CMakeLists.txt
    "cmake_minimum_required(VERSION 3.20)\nproject(too_new LANGUAGES CXX)\nfind_package(mpp 999 REQUIRED)\n")
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${WORK_DIR}/too-new -B ${WORK_DIR}/too-new-build -G ${GENERATOR}
                    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix}
                  RESULT_VARIABLE status OUTPUT_QUIET ERROR_QUIET)
  if(status EQUAL 0)
    message(FATAL_ERROR "find_package(mpp 999) succeeded: the version file does not check versions")
  endif()
elseif(MODE STREQUAL "pkg-config")
  find_program(PKG_CONFIG_EXECUTABLE pkg-config REQUIRED)
  install_mpp()
  set(ENV{PKG_CONFIG_PATH} ${prefix}/share/pkgconfig)
  step("pkg-config --modversion mpp" ${PKG_CONFIG_EXECUTABLE} --modversion mpp)
  string(STRIP "${step_output}" version)
  if(NOT version STREQUAL MPP_VERSION)
    message(FATAL_ERROR "mpp.pc says version '${version}', the project is ${MPP_VERSION}")
  endif()
  step("pkg-config --cflags --libs mpp" ${PKG_CONFIG_EXECUTABLE} --cflags --libs mpp)
  string(STRIP "${step_output}" flags)
  if(NOT flags MATCHES "-I${prefix}/include")
    message(FATAL_ERROR "pkg-config --cflags mpp does not point at the installed headers: ${flags}")
  endif()
  separate_arguments(flag_list UNIX_COMMAND "${flags}")
  step("compile the consumer with the pkg-config flags"
    ${CXX_COMPILER} ${here}/consumer.cpp ${flag_list} -o ${WORK_DIR}/app)
  check_consumer(${WORK_DIR}/app)
elseif(MODE STREQUAL "add_subdirectory")
  build_consumer(${here}/add_subdirectory)
elseif(MODE STREQUAL "fetchcontent")
  build_consumer(${here}/fetchcontent)
else()
  message(FATAL_ERROR "packaging/run.cmake: unknown MODE '${MODE}'")
endif()
