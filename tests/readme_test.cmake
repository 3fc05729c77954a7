# README code blocks compile: run by ctest as `cmake -P`. Every ```cpp block of README.md is
# written to its own translation unit (after `#include <mpp/mpp.hpp>` and the common std headers,
# so a block may show only what it is about) and compiled with -fsyntax-only against include/.
# Inputs (-D): README, INCLUDE_DIR, WORK_DIR, CXX_COMPILER; optional SECOND_COMPILER (clang++, since
# mpp's headers promise to compile with clang 14 too).
cmake_minimum_required(VERSION 3.20)

foreach(input README INCLUDE_DIR WORK_DIR CXX_COMPILER)
  if(NOT DEFINED ${input})
    message(FATAL_ERROR "readme_test.cmake: -D${input}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
# Split into lines without letting CMake's list syntax see the text: ';' separates list elements
# and an unbalanced '[' or ']' would glue lines together, so they travel as placeholders.
file(READ ${README} text)
string(REPLACE ";" "@MPP_SEMICOLON@" text "${text}")
string(REPLACE "[" "@MPP_OPEN_BRACKET@" text "${text}")
string(REPLACE "]" "@MPP_CLOSE_BRACKET@" text "${text}")
string(REPLACE "\n" ";" lines "${text}")

set(prelude "#include <mpp/mpp.hpp>\n#include <chrono>\n#include <cstdio>\n#include <iostream>\n#include <string>\n#include <vector>\n")
set(in_block FALSE)
set(count 0)
set(line_number 0)
set(failures "")
foreach(line IN LISTS lines)
  math(EXPR line_number "${line_number} + 1")
  if(NOT in_block AND line MATCHES "^[ \t]*```(cpp|c\\+\\+)[ \t]*$")
    set(in_block TRUE)
    set(block "")
    math(EXPR count "${count} + 1")
  elseif(in_block AND line MATCHES "^[ \t]*```[ \t]*$")
    set(in_block FALSE)
    set(source ${WORK_DIR}/readme_block_${count}.cpp)
    file(WRITE ${source} "${prelude}#line 1 \"README.md block ${count}\"\n${block}")
    foreach(compiler IN ITEMS ${CXX_COMPILER} ${SECOND_COMPILER})
      execute_process(
        COMMAND ${compiler} -std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Werror
                -Wno-unused-function -Wno-unused-variable -I${INCLUDE_DIR} ${source}
        RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
      get_filename_component(compiler_name ${compiler} NAME)
      if(status EQUAL 0)
        message(STATUS "README block ${count} compiles with ${compiler_name}")
      else()
        string(APPEND failures "README block ${count} (${source}) does not compile with ${compiler_name}:\n${out}${err}\n")
      endif()
    endforeach()
  elseif(in_block)
    string(REPLACE "@MPP_SEMICOLON@" ";" line "${line}")
    string(REPLACE "@MPP_OPEN_BRACKET@" "[" line "${line}")
    string(REPLACE "@MPP_CLOSE_BRACKET@" "]" line "${line}")
    string(APPEND block "${line}\n")
  endif()
endforeach()

if(in_block)
  message(FATAL_ERROR "README.md ends inside a ```cpp block")
endif()
if(count EQUAL 0)
  message(FATAL_ERROR "README.md has no ```cpp block: nothing was checked")
endif()
if(failures)
  message(FATAL_ERROR "${failures}")
endif()
message(STATUS "all ${count} README C++ blocks compile")
