#!/bin/sh
# The minimal image's stop script: trivial, so that benchmarks measure the operator.
echo stop
