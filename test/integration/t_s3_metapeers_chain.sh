#!/usr/bin/env bash
# t_s3_metapeers with the ask tree as deep as four nodes allow: fan-out 1 (test-only
# MOWS_TEST_META_FANOUT), so each node asks the one ranked just before it. The snapshot goes
# down three levels at mount and after a refresh, a REFRESH goes up them, and a dead lister
# is passed over; the store is still listed once per refresh. Same checks as t_s3_metapeers.
# timeout: 300
export MOWS_TEST_META_FANOUT=1
. "$(dirname "$0")/t_s3_metapeers.sh"
