#!/bin/sh
# The minimal image's run script: trivial, so that benchmarks measure the operator.
echo run
