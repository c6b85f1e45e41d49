#!/bin/sh
# Regenerates nccl_avg_ptx.h from nccl_avg.cu (needs nvcc; the build does not).
# PTX ISA 6.4 lets drivers from CUDA 10.1 on JIT it.
set -e
cd "$(dirname "$0")"
{
  echo '/* Generated from nccl_avg.cu (nvcc -ptx, .version 6.4); do not edit. */'
  echo 'static const char gc_nccl_avg_ptx[] ='
  nvcc -ptx -arch=compute_75 -O3 nccl_avg.cu -o - |
    sed 's/^\.version .*$/.version 6.4/' |
    grep -v -E '^\s*(//.*)?$' |
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/'
  echo '    ;'
} >nccl_avg_ptx.h.tmp
mv nccl_avg_ptx.h.tmp nccl_avg_ptx.h
