/* nccl_avg.cu - the source of nccl_avg_ptx.h: integer averages divide the
 * NCCL sum by the group size in place, truncating toward zero (C division).
 * Regenerate with:
 *   nvcc -ptx -arch=compute_75 -O3 nccl_avg.cu -o - | sed 's/^\.version .*$/.version 6.4/'
 * then keep the PTX lines only (see the header's first line). PTX ISA 6.4
 * lets drivers from CUDA 10.1 on JIT it; no toolkit is needed to build. */
#define GC_DIV_KERNEL(name, T)                                                          \
  extern "C" __global__ void name(T *p, unsigned long long n, long long d) {            \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; \
         i < n; i += (unsigned long long)gridDim.x * blockDim.x)                        \
      p[i] = (T)(p[i] / d);                                                             \
  }
GC_DIV_KERNEL(gc_div_s8, signed char)
GC_DIV_KERNEL(gc_div_u8, unsigned char)
GC_DIV_KERNEL(gc_div_s32, int)
GC_DIV_KERNEL(gc_div_s64, long long)
