#!/bin/sh
# The minimal image's start script: trivial, so that benchmarks measure the operator.
echo start
