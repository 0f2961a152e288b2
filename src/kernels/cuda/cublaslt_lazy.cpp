// cuBLASLt, loaded when it is first used instead of when kq starts.
//
// Linking libcublasLt makes every process that loads it run its static initializers (the registration of its
// kernels): measured 0.41-0.49 s for an empty program on the development VM, 0.75-0.86 s for `kq --version`
// (which starts twice: it re-executes itself to set OpenMP's wait policy), against 0.02 s for a CPU-only build.
// kq calls the 14 cuBLASLt entry points below; this file defines them (the declarations of cublasLt.h, so the
// types are checked) as forwarders to the library opened with dlopen on the first call. A CPU command of a
// CUDA-enabled kq never loads it, and a machine without it fails at the first GEMM with
// CUBLAS_STATUS_NOT_INITIALIZED (cublasLtGetStatusName then names the library and dlerror's reason) instead of
// at start-up.
#include <cublasLt.h>
#include <dlfcn.h>

#include <string>

namespace {

/// The library's handle (nullptr when it could not be opened) and why it could not be.
struct LtLibrary {
  void* handle = nullptr;
  std::string error;
};

const LtLibrary& lt_library() {
  static const LtLibrary lib = [] {
    LtLibrary l;
    const std::string name = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
    l.handle = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!l.handle) {
      const char* e = ::dlerror();
      l.error = name + " could not be loaded: " + (e ? e : "unknown reason");
    }
    return l;
  }();
  return lib;
}

/// The library's function `name` as F*, or nullptr when the library or the symbol is missing.
template <class F>
F* lt_function(const char* name) {
  const LtLibrary& lib = lt_library();
  return lib.handle ? reinterpret_cast<F*>(::dlsym(lib.handle, name)) : nullptr;
}

}  // namespace

// Each forwarder resolves its function once; a missing library or symbol answers CUBLAS_STATUS_NOT_INITIALIZED.
#define KQ_LT_FORWARD(name, params, args)                                                  \
  cublasStatus_t CUBLASWINAPI name params {                                                \
    static auto* const fn = lt_function<cublasStatus_t CUBLASWINAPI params>(#name);       \
    return fn ? fn args : CUBLAS_STATUS_NOT_INITIALIZED;                                   \
  }

KQ_LT_FORWARD(cublasLtCreate, (cublasLtHandle_t * handle), (handle))
KQ_LT_FORWARD(cublasLtDestroy, (cublasLtHandle_t handle), (handle))
KQ_LT_FORWARD(cublasLtMatrixLayoutCreate,
              (cublasLtMatrixLayout_t * layout, cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld),
              (layout, type, rows, cols, ld))
KQ_LT_FORWARD(cublasLtMatrixLayoutDestroy, (cublasLtMatrixLayout_t layout), (layout))
KQ_LT_FORWARD(cublasLtMatmulDescCreate,
              (cublasLtMatmulDesc_t * desc, cublasComputeType_t compute, cudaDataType_t scale),
              (desc, compute, scale))
KQ_LT_FORWARD(cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t desc), (desc))
KQ_LT_FORWARD(cublasLtMatmulDescSetAttribute,
              (cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const void* buf, size_t bytes),
              (desc, attr, buf, bytes))
KQ_LT_FORWARD(cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t * pref), (pref))
KQ_LT_FORWARD(cublasLtMatmulPreferenceDestroy, (cublasLtMatmulPreference_t pref), (pref))
KQ_LT_FORWARD(cublasLtMatmulPreferenceSetAttribute,
              (cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
               size_t bytes),
              (pref, attr, buf, bytes))
KQ_LT_FORWARD(cublasLtMatmulAlgoGetHeuristic,
              (cublasLtHandle_t handle, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
               cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref, int requested,
               cublasLtMatmulHeuristicResult_t results[], int* returned),
              (handle, op, a, b, c, d, pref, requested, results, returned))
KQ_LT_FORWARD(cublasLtMatmul,
              (cublasLtHandle_t handle, cublasLtMatmulDesc_t op, const void* alpha, const void* A,
               cublasLtMatrixLayout_t a, const void* B, cublasLtMatrixLayout_t b, const void* beta, const void* C,
               cublasLtMatrixLayout_t c, void* D, cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t* algo,
               void* workspace, size_t workspace_bytes, cudaStream_t stream),
              (handle, op, alpha, A, a, B, b, beta, C, c, D, d, algo, workspace, workspace_bytes, stream))

#undef KQ_LT_FORWARD

/// The library's version, 0 when it cannot be loaded (kq info then reports it missing).
size_t CUBLASWINAPI cublasLtGetVersion(void) {
  static auto* const fn = lt_function<size_t CUBLASWINAPI(void)>("cublasLtGetVersion");
  return fn ? fn() : 0;
}

/// The library's name for `status`; for CUBLAS_STATUS_NOT_INITIALIZED while the library could not be loaded, why.
const char* CUBLASWINAPI cublasLtGetStatusName(cublasStatus_t status) {
  static auto* const fn = lt_function<const char* CUBLASWINAPI(cublasStatus_t)>("cublasLtGetStatusName");
  if (fn) return fn(status);
  const LtLibrary& lib = lt_library();
  return lib.handle ? "CUBLAS_STATUS (cublasLtGetStatusName missing)" : lib.error.c_str();
}
