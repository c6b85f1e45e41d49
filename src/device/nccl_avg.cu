/* nccl_avg.cu - the source of nccl_avg_ptx.h. Integer averages divide the
 * NCCL sum by the group size in place, truncating toward zero (C division).
 * Regenerate the header with ./gen-ptx.sh (nvcc -ptx, PTX lines only,
 * .version 6.4 so that drivers from CUDA 10.1 on JIT it); no toolkit is
 * needed to build. */
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

/* Strided block copies (copy3d) in 16-byte words: n0 x n1 rows of w16
 * words, row (i, j) from src + i*s0 + j*s1 to dst + i*d0 + j*d1 (all in
 * words). One thread per word over the flattened index, so narrow rows
 * (a dim-1 all-gather of a few hundred bytes per row) keep every thread
 * busy, and all ranks' blocks go in one launch. 32-bit index arithmetic:
 * the caller keeps total (n0*n1*w16) at or below 2^31. */
extern "C" __global__ void gc_copy3d_v16(uint4 *dst, unsigned long long d0, unsigned long long d1,
                                         const uint4 *src, unsigned long long s0,
                                         unsigned long long s1, unsigned w16, unsigned n1,
                                         unsigned total) {
  for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < total;
       e += gridDim.x * blockDim.x) {
    unsigned row = e / w16, k = e - row * w16;
    unsigned i = row / n1, j = row - i * n1;
    dst[i * d0 + j * d1 + k] = src[i * s0 + j * s1 + k];
  }
}
