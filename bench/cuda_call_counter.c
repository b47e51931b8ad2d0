/* Counts CUDA driver and cuBLAS calls of a process, by interposition (LD_PRELOAD).
 *
 *   gcc -O2 -shared -fPIC -o /tmp/cuda_call_counter.so bench/cuda_call_counter.c -ldl
 *   LD_PRELOAD=/tmp/cuda_call_counter.so python3 ...
 *
 * janus-rs's CUDA module links libcuda and libcublas directly (cudarc's dynamic-linking), so
 * its calls resolve to these wrappers, which count and forward to the real functions. Python
 * reads the counters with ctypes (bench/gpu.py):
 *   lib = ctypes.CDLL(None); lib.janus_cuda_counts(buf, n) fills n uint64 counters, in the
 *   order of janus_cuda_count_names() (a comma-separated string).
 * cuBLAS's own kernels are launched inside libcublas and are not seen as cuLaunchKernel: the
 * cuBLAS entry points are counted instead.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum {
  C_LAUNCH, C_LAUNCH_EX, C_ALLOC_ASYNC, C_ALLOC, C_FREE_ASYNC, C_FREE, C_HTOD_ASYNC, C_HTOD,
  C_DTOH_ASYNC, C_DTOH, C_EVENT_CREATE, C_EVENT_RECORD, C_STREAM_WAIT_EVENT, C_STREAM_SYNC,
  C_CTX_SYNC, C_GRAPH_LAUNCH, C_CUBLAS_GEMM_STRIDED_BATCHED_EX, C_CUBLAS_GEMM_EX,
  C_CUBLAS_LT_MATMUL, C_N
};
static const char *NAMES =
    "cuLaunchKernel,cuLaunchKernelEx,cuMemAllocAsync,cuMemAlloc,cuMemFreeAsync,cuMemFree,"
    "cuMemcpyHtoDAsync,cuMemcpyHtoD,cuMemcpyDtoHAsync,cuMemcpyDtoH,cuEventCreate,cuEventRecord,"
    "cuStreamWaitEvent,cuStreamSynchronize,cuCtxSynchronize,cuGraphLaunch,"
    "cublasGemmStridedBatchedEx,cublasGemmEx,cublasLtMatmul";
static uint64_t counts[C_N];

const char *janus_cuda_count_names(void) { return NAMES; }
void janus_cuda_counts(uint64_t *out, int n) {
  for (int i = 0; i < n && i < C_N; i++) out[i] = __atomic_load_n(&counts[i], __ATOMIC_RELAXED);
}

/* The real function: the next definition in the global scope, else from the library itself
 * (Python loads extension modules and their libcuda/libcublas with RTLD_LOCAL, so RTLD_NEXT
 * does not see them). Never NULL: a missing symbol aborts with its name. */
static void *real_sym(const char *name) {
  static const char *libs[] = {"libcuda.so.1", "libcublas.so.13", "libcublasLt.so.13", NULL};
  void *f = dlsym(RTLD_NEXT, name);
  for (int i = 0; !f && libs[i]; i++) {
    void *h = dlopen(libs[i], RTLD_LAZY | RTLD_NOLOAD);
    if (!h) h = dlopen(libs[i], RTLD_LAZY);
    if (h) f = dlsym(h, name);
  }
  if (!f) {
    fprintf(stderr, "cuda_call_counter: cannot find the real %s\n", name);
    abort();
  }
  return f;
}
#define REAL(name) static void *real_##name; \
  if (!real_##name) real_##name = real_sym(#name)
#define BUMP(c) __atomic_add_fetch(&counts[c], 1, __ATOMIC_RELAXED)

typedef int R; /* CUresult / cublasStatus_t */
typedef void *P;
typedef unsigned long long D; /* CUdeviceptr */

R cuLaunchKernel(P f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                 unsigned bz, unsigned shm, P s, P *params, P *extra) {
  REAL(cuLaunchKernel); BUMP(C_LAUNCH);
  return ((R(*)(P, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, P, P *,
                P *))real_cuLaunchKernel)(f, gx, gy, gz, bx, by, bz, shm, s, params, extra);
}
R cuLaunchKernelEx(const void *cfg, P f, P *params, P *extra) {
  REAL(cuLaunchKernelEx); BUMP(C_LAUNCH_EX);
  return ((R(*)(const void *, P, P *, P *))real_cuLaunchKernelEx)(cfg, f, params, extra);
}
R cuMemAllocAsync(D *p, size_t n, P s) {
  REAL(cuMemAllocAsync); BUMP(C_ALLOC_ASYNC);
  return ((R(*)(D *, size_t, P))real_cuMemAllocAsync)(p, n, s);
}
R cuMemAlloc_v2(D *p, size_t n) {
  REAL(cuMemAlloc_v2); BUMP(C_ALLOC);
  return ((R(*)(D *, size_t))real_cuMemAlloc_v2)(p, n);
}
R cuMemFreeAsync(D p, P s) {
  REAL(cuMemFreeAsync); BUMP(C_FREE_ASYNC);
  return ((R(*)(D, P))real_cuMemFreeAsync)(p, s);
}
R cuMemFree_v2(D p) {
  REAL(cuMemFree_v2); BUMP(C_FREE);
  return ((R(*)(D))real_cuMemFree_v2)(p);
}
R cuMemcpyHtoDAsync_v2(D dst, const void *src, size_t n, P s) {
  REAL(cuMemcpyHtoDAsync_v2); BUMP(C_HTOD_ASYNC);
  return ((R(*)(D, const void *, size_t, P))real_cuMemcpyHtoDAsync_v2)(dst, src, n, s);
}
R cuMemcpyHtoD_v2(D dst, const void *src, size_t n) {
  REAL(cuMemcpyHtoD_v2); BUMP(C_HTOD);
  return ((R(*)(D, const void *, size_t))real_cuMemcpyHtoD_v2)(dst, src, n);
}
R cuMemcpyDtoHAsync_v2(void *dst, D src, size_t n, P s) {
  REAL(cuMemcpyDtoHAsync_v2); BUMP(C_DTOH_ASYNC);
  return ((R(*)(void *, D, size_t, P))real_cuMemcpyDtoHAsync_v2)(dst, src, n, s);
}
R cuMemcpyDtoH_v2(void *dst, D src, size_t n) {
  REAL(cuMemcpyDtoH_v2); BUMP(C_DTOH);
  return ((R(*)(void *, D, size_t))real_cuMemcpyDtoH_v2)(dst, src, n);
}
R cuEventCreate(P *e, unsigned flags) {
  REAL(cuEventCreate); BUMP(C_EVENT_CREATE);
  return ((R(*)(P *, unsigned))real_cuEventCreate)(e, flags);
}
R cuEventRecord(P e, P s) {
  REAL(cuEventRecord); BUMP(C_EVENT_RECORD);
  return ((R(*)(P, P))real_cuEventRecord)(e, s);
}
R cuStreamWaitEvent(P s, P e, unsigned flags) {
  REAL(cuStreamWaitEvent); BUMP(C_STREAM_WAIT_EVENT);
  return ((R(*)(P, P, unsigned))real_cuStreamWaitEvent)(s, e, flags);
}
R cuStreamSynchronize(P s) {
  REAL(cuStreamSynchronize); BUMP(C_STREAM_SYNC);
  return ((R(*)(P))real_cuStreamSynchronize)(s);
}
R cuCtxSynchronize(void) {
  REAL(cuCtxSynchronize); BUMP(C_CTX_SYNC);
  return ((R(*)(void))real_cuCtxSynchronize)();
}
R cuGraphLaunch(P g, P s) {
  REAL(cuGraphLaunch); BUMP(C_GRAPH_LAUNCH);
  return ((R(*)(P, P))real_cuGraphLaunch)(g, s);
}
R cublasGemmStridedBatchedEx(P h, int ta, int tb, int m, int n, int k, const void *alpha,
                             const void *A, int at, int lda, long long sa, const void *B, int bt,
                             int ldb, long long sb, const void *beta, void *C, int ct, int ldc,
                             long long sc, int batch, int compute, int algo) {
  REAL(cublasGemmStridedBatchedEx); BUMP(C_CUBLAS_GEMM_STRIDED_BATCHED_EX);
  return ((R(*)(P, int, int, int, int, int, const void *, const void *, int, int, long long,
                const void *, int, int, long long, const void *, void *, int, int, long long, int,
                int, int))real_cublasGemmStridedBatchedEx)(h, ta, tb, m, n, k, alpha, A, at, lda,
                                                           sa, B, bt, ldb, sb, beta, C, ct, ldc,
                                                           sc, batch, compute, algo);
}
R cublasGemmEx(P h, int ta, int tb, int m, int n, int k, const void *alpha, const void *A, int at,
               int lda, const void *B, int bt, int ldb, const void *beta, void *C, int ct, int ldc,
               int compute, int algo) {
  REAL(cublasGemmEx); BUMP(C_CUBLAS_GEMM_EX);
  return ((R(*)(P, int, int, int, int, int, const void *, const void *, int, int, const void *,
                int, int, const void *, void *, int, int, int, int))real_cublasGemmEx)(
      h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc, compute, algo);
}
R cublasLtMatmul(P h, P desc, const void *alpha, const void *A, P Ad, const void *B, P Bd,
                 const void *beta, const void *C, P Cd, void *Dm, P Dd, const void *algo,
                 void *ws, size_t wss, P s) {
  REAL(cublasLtMatmul); BUMP(C_CUBLAS_LT_MATMUL);
  return ((R(*)(P, P, const void *, const void *, P, const void *, P, const void *, const void *,
                P, void *, P, const void *, void *, size_t, P))real_cublasLtMatmul)(
      h, desc, alpha, A, Ad, B, Bd, beta, C, Cd, Dm, Dd, algo, ws, wss, s);
}
