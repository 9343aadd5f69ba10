#!/bin/sh
# smtpd_hostile.sh - stub until written
echo "1..0 # SKIP not written yet"
