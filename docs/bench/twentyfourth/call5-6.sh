#!/usr/bin/env bash
# twenty-fourth round, calls 5 and 6 (warm, back to back): the GGUF's first two thirds copied to /tmp
# call 5: cp .g1/gp00 /tmp/ (carry .g1); call 6: cp .g2/gp01 /tmp/ (carry .g2)
