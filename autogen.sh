#!/bin/sh
# autogen.sh - create configure and Makefile.in from a git checkout
set -e
cd "$(dirname "$0")"
mkdir -p m4 build-aux
autoreconf --install --force --warnings=all
# automake does not copy its TAP driver by itself
cp -f "$(automake --print-libdir)/tap-driver.sh" build-aux/
