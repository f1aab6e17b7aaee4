# Test registration helpers. Every test gets a TIMEOUT; MPI tests run under mpiexec with the
# sandbox environment of scripts/mpi_env.sh (root, oversubscription) passed as ENVIRONMENT.
set(PPMPI_TEST_ENV
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
  OMPI_MCA_btl_vader_single_copy_mechanism=none
  OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
  PYTHONPATH=${CMAKE_BINARY_DIR}/python PYTHONDONTWRITEBYTECODE=1)

# ppmpi_add_mpi_test(NAME <name> COMMAND <exe> [args...] NPROCS <n>... [TIMEOUT <s>])
# registers <name>-np<n> for each n: mpiexec --oversubscribe -n <n> <exe> [args...]
# No --enable-recovery here: with it, Open MPI 4.1.4's mpirun exits 0 whatever the ranks did,
# and these tests kill no rank.
function(ppmpi_add_mpi_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "COMMAND;NPROCS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  foreach(n ${T_NPROCS})
    add_test(NAME ${T_NAME}-np${n}
             COMMAND ${MPIEXEC_EXECUTABLE} --oversubscribe ${MPIEXEC_NUMPROC_FLAG} ${n}
                     ${MPIEXEC_PREFLAGS} ${T_COMMAND} ${MPIEXEC_POSTFLAGS})
    set_tests_properties(${T_NAME}-np${n} PROPERTIES TIMEOUT ${T_TIMEOUT}
                         ENVIRONMENT "${PPMPI_TEST_ENV}")
  endforeach()
endfunction()

# ppmpi_add_test(NAME <name> COMMAND <cmd...> [TIMEOUT <s>]): a test with the sandbox env.
function(ppmpi_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "COMMAND" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_COMMAND})
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} ENVIRONMENT "${PPMPI_TEST_ENV}")
endfunction()

# Under `mpirun --enable-recovery`, mpirun exits 0 even when rank 0 fails (Open MPI 4.1.4), so
# such tests pass on what they print: ppmpi_expect_output(<test>... PASS <re> [FAIL <re>]).
function(ppmpi_expect_output)
  cmake_parse_arguments(T "" "PASS;FAIL" "TESTS" ${ARGN})
  set_tests_properties(${T_TESTS} PROPERTIES PASS_REGULAR_EXPRESSION "${T_PASS}")
  if(T_FAIL)
    set_tests_properties(${T_TESTS} PROPERTIES FAIL_REGULAR_EXPRESSION "${T_FAIL}")
  endif()
endfunction()
