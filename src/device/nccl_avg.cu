/* nccl_avg.cu - the source of nccl_avg_ptx.h. Integer averages divide the
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

/* Strided copies (copy2d) in 16-byte words: rows over blockIdx.y, words of
 * a row over x. Used when width, pitches and pointers are multiples of 16;
 * about twice the bandwidth of cuMemcpy2DAsync for the narrow rows of a
 * dim-1 all-gather. */
extern "C" __global__ void gc_copy2d_v16(uint4 *dst, unsigned long long dpitch16,
                                         const uint4 *src, unsigned long long spitch16,
                                         unsigned long long width16, unsigned long long height) {
  for (unsigned long long r = blockIdx.y; r < height; r += gridDim.y)
    for (unsigned long long c = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         c < width16; c += (unsigned long long)gridDim.x * blockDim.x)
      dst[r * dpitch16 + c] = src[r * spitch16 + c];
}
