# Helpers that make every fleetcanary target the same way.
#
# fleetcanary_cc_library(NAME <name> [HDRS ...] [SRCS ...] [DEPS ...])
#   Creates target fleetcanary_<name> and its alias fleetcanary::<name>.
#   Header-only when SRCS is empty. DEPS are linked PUBLIC.
# fleetcanary_cc_binary(NAME <name> SRCS ... [DEPS ...])
#   Creates an executable named <name> (e.g. fleetcanary-agent).
# fleetcanary_cc_test(NAME <name> SRCS ... [DEPS ...] [LABELS ...])
#   Creates a GoogleTest executable linked with gtest_main and registers its
#   cases with ctest (gtest_discover_tests). Cases are labelled `unit`, or
#   `integration` under tests/integration and tests/security (real processes),
#   plus `concurrent` when NAME is in FLEETCANARY_CONCURRENT_TESTS.
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
  cmake_parse_arguments(FC "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${FC_NAME} ${FC_SRCS})
  target_compile_options(${FC_NAME} PRIVATE ${FLEETCANARY_WARNINGS})
  target_link_libraries(${FC_NAME} PRIVATE ${FC_DEPS} GTest::gmock GTest::gtest_main)
  target_include_directories(${FC_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_definitions(${FC_NAME} PRIVATE
    FLEETCANARY_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    FLEETCANARY_BINARY_DIR="${PROJECT_BINARY_DIR}")
  file(RELATIVE_PATH _dir ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  if(_dir MATCHES "^tests/(integration|security)")
    list(APPEND FC_LABELS integration)
  else()
    list(APPEND FC_LABELS unit)
    set_property(GLOBAL APPEND PROPERTY FLEETCANARY_UNIT_TEST_TARGETS ${FC_NAME})
  endif()
  if(FC_NAME IN_LIST FLEETCANARY_CONCURRENT_TESTS)
    list(APPEND FC_LABELS concurrent)
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
    PROPERTIES LABELS "${FC_LABELS}"
    DISCOVERY_TIMEOUT 60)
endfunction()

function(fleetcanary_cc_benchmark)
  cmake_parse_arguments(FC "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${FC_NAME} ${FC_SRCS})
  target_compile_options(${FC_NAME} PRIVATE ${FLEETCANARY_WARNINGS})
  target_link_libraries(${FC_NAME} PRIVATE ${FC_DEPS} benchmark::benchmark)
  target_include_directories(${FC_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
endfunction()
