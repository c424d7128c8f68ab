#!/usr/bin/env bash
# twenty-fifth round, call 2 (warm): the GGUF's second third copied to /tmp
cp .g2/gp01 /tmp/ && ls -l /tmp/gp00 /tmp/gp01
