#!/usr/bin/env bash
# The fault matrix (EIO, early EOF, short reads, stalls, flipped bits x read()/mmap) on one
# node with the default verify = file: see fault_matrix.sh.
# timeout: 240
. "$(dirname "$0")/lib.sh"
VERIFY=file
. "$MOWS_IT/fault_matrix.sh"
