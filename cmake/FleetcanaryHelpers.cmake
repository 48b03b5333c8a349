# Helpers that make every fleetcanary target the same way.
#
# fleetcanary_cc_library(NAME <name> [HDRS ...] [SRCS ...] [DEPS ...])
#   Creates target fleetcanary_<name> and its alias fleetcanary::<name>.
#   Header-only when SRCS is empty. DEPS are linked PUBLIC.
# fleetcanary_cc_binary(NAME <name> SRCS ... [DEPS ...])
#   Creates an executable named <name> (e.g. fleetcanary-agent).
# fleetcanary_cc_test(NAME <name> SRCS ... [DEPS ...] [LABELS ...])
#   Creates a GoogleTest executable linked with gtest_main and registers its
#   cases with ctest (gtest_discover_tests), labelled `unit`,
#   `unit_concurrent` (NAME in FLEETCANARY_CONCURRENT_TESTS) or `integration`
#   (tests/integration, tests/security: real processes).
# fleetcanary_cc_benchmark(NAME <name> SRCS ... [DEPS ...])
#   Creates a Google Benchmark executable (not run by ctest).

set(FLEETCANARY_WARNINGS -Wall -Wextra)

function(fleetcanary_cc_library)
  cmake_parse_arguments(FC "" "NAME" "HDRS;SRCS;DEPS" ${ARGN})
  set(_target fleetcanary_${FC_NAME})
  if(FC_SRCS)
    add_library(${_target} STATIC ${FC_SRCS} ${FC_HDRS})
    target_compile_options(${_target} PRIVATE ${FLEETCANARY_WARNINGS})
    target_link_libraries(${_target} PUBLIC ${FC_DEPS})
    target_include_directories(${_target} PUBLIC ${PROJECT_SOURCE_DIR})
  else()
    add_library(${_target} INTERFACE)
    target_link_libraries(${_target} INTERFACE ${FC_DEPS})
    target_include_directories(${_target} INTERFACE ${PROJECT_SOURCE_DIR})
  endif()
  add_library(fleetcanary::${FC_NAME} ALIAS ${_target})
endfunction()

function(fleetcanary_cc_binary)
  cmake_parse_arguments(FC "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${FC_NAME} ${FC_SRCS})
  target_compile_options(${FC_NAME} PRIVATE ${FLEETCANARY_WARNINGS})
  target_link_libraries(${FC_NAME} PRIVATE ${FC_DEPS})
  target_include_directories(${FC_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
endfunction()

function(fleetcanary_cc_test)
  # SERIAL: the cases never run beside another test (real-time scenarios
  # whose probe rate needs the machine to themselves).
  cmake_parse_arguments(FC "SERIAL" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  # Every test process gets its own TEST_TMPDIR (tests/testing/private_tmpdir.cc).
  add_executable(${FC_NAME} ${FC_SRCS}
    ${PROJECT_SOURCE_DIR}/tests/testing/private_tmpdir.cc)
  target_compile_options(${FC_NAME} PRIVATE ${FLEETCANARY_WARNINGS})
  target_link_libraries(${FC_NAME} PRIVATE ${FC_DEPS} GTest::gmock GTest::gtest_main)
  target_include_directories(${FC_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_definitions(${FC_NAME} PRIVATE
    FLEETCANARY_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    FLEETCANARY_BINARY_DIR="${PROJECT_BINARY_DIR}")
  # One label per case (gtest_discover_tests cannot pass a list): `unit`,
  # `unit_concurrent` for the concurrent modules' tests, or `integration`
  # under tests/integration and tests/security (real processes). ctest -L
  # takes a regular expression: `-L ^unit` selects every unit test.
  file(RELATIVE_PATH _dir ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  if(_dir MATCHES "^tests/(integration|security)")
    set(_label integration)
  else()
    set(_label unit)
    set_property(GLOBAL APPEND PROPERTY FLEETCANARY_UNIT_TEST_TARGETS ${FC_NAME})
    if(FC_NAME IN_LIST FLEETCANARY_CONCURRENT_TESTS)
      set(_label unit_concurrent)
    endif()
  endif()
  if(FC_LABELS)
    message(FATAL_ERROR "fleetcanary_cc_test(${FC_NAME}): LABELS are set "
                        "by the helper (unit, unit_concurrent, integration)")
  endif()
  # Sanitizer builds list their cases when ctest runs, in ctest's
  # environment (the TSan pass needs its instrumented abseil to start).
  if(FLEETCANARY_SANITIZE)
    set(_discovery PRE_TEST)
  else()
    set(_discovery POST_BUILD)
  endif()
  gtest_discover_tests(${FC_NAME}
    DISCOVERY_MODE ${_discovery}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES LABELS ${_label} RUN_SERIAL ${FC_SERIAL}
    DISCOVERY_TIMEOUT 60)
endfunction()

function(fleetcanary_cc_benchmark)
  cmake_parse_arguments(FC "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${FC_NAME} ${FC_SRCS})
  target_compile_options(${FC_NAME} PRIVATE ${FLEETCANARY_WARNINGS})
  target_link_libraries(${FC_NAME} PRIVATE ${FC_DEPS} benchmark::benchmark)
  target_include_directories(${FC_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
endfunction()
