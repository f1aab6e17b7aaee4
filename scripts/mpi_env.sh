#!/usr/bin/env bash
# Sourced by the scripts and CI: settings only this sandbox needs (we run as root, on 2 slots).
# The product's own settings (oversubscription by one, recovery) are applied by ppmpi itself.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# No CMA/ptrace single-copy inside containers without ptrace permission.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# This sandbox blocks connections to its own eth0 address: keep Open MPI's TCP on loopback
# (spawned workers reach a singleton master over TCP).
export OMPI_MCA_btl_tcp_if_include=lo
export OMPI_MCA_oob_tcp_if_include=lo
