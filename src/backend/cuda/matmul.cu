/*
 * matmul.cu - dst (+)= alpha op(a) op(b) (+ bias), row-major, through cuBLASLt. f32 operands:
 * CUBLAS_COMPUTE_32F, so results match the CPU to ~1e-6 (HM_CUDA_TF32=1 switches to TF32 tensor
 * cores). bf16 operands (a, b and bias share one type): bf16 tensor cores with f32 accumulation,
 * dst bf16 (activations) or f32 (parameter gradients, accumulated with beta = 1). cuBLASLt is column-major, so the row-major product C (M, N) is computed as the
 * column-major C^T (N, M) = op(b)^T op(a)^T: b is passed as the first operand and a as the second.
 * The bias is fused with CUBLASLT_EPILOGUE_BIAS (one value per column-major row = per output
 * column), and accumulation is beta = 1, so `D = alpha AB + beta C + bias` covers every case in one
 * call. The algorithm from cublasLtMatmulAlgoGetHeuristic is cached per shape, transposes, epilogue
 * and operand alignment (block tensors are packed without padding, so a weight may be only 4-byte
 * aligned: the alignment preferences are set from the real pointers, and a bias that is not
 * 16-byte aligned is added by a separate kernel instead of the epilogue). Batched products use strided
 * batches. A GELU epilogue would need a fused matmul+gelu node in the graph (README.md).
 */
#include "matmul.cuh"

struct mm_key {
    int64_t M, N, K, batch;
    int ta, tb, bias, beta, tf32;
    int in_type, out_type; /* enum hm_dtype of a/b/bias and of dst */
    int align[3]; /* a, b, c */
};

struct mm_entry {
    struct mm_key key;
    cublasLtMatmulAlgo_t algo;
    bool bias_in_epilogue;
};

#define MM_CACHE 128
struct hm_mm_cache {
    struct mm_entry e[MM_CACHE];
    int n, next;
};

enum hm_status hm_cuda_mm_cache_new(struct hm_mm_cache **out)
{
    struct hm_mm_cache *c = (struct hm_mm_cache *)hm_calloc(1, sizeof(*c));
    if (!c)
        return hm_fail(HM_ERR_NOMEM, "cuda: out of host memory for the matmul cache");
    *out = c;
    return HM_OK;
}

void hm_cuda_mm_cache_free(struct hm_mm_cache *c)
{
    hm_free(c);
}

static int ptr_align(const void *p)
{
    uintptr_t u = (uintptr_t)p;
    int a = 256;
    while (a > 2 && (u % (uintptr_t)a) != 0) /* packed bf16 weights may be 2-byte aligned */
        a >>= 1;
    return a;
}

static bool key_eq(const struct mm_key *x, const struct mm_key *y)
{
    return memcmp(x, y, sizeof *x) == 0;
}

/* Descriptors of one call; destroyed by mm_descs_free whatever happened. */
struct mm_descs {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc; /* la: first operand (= b), lb: second (= a), lc: C and D */
    cublasLtMatmulPreference_t pref;
};

static void mm_descs_free(struct mm_descs *d)
{
    if (d->pref)
        cublasLtMatmulPreferenceDestroy(d->pref);
    if (d->la)
        cublasLtMatrixLayoutDestroy(d->la);
    if (d->lb)
        cublasLtMatrixLayoutDestroy(d->lb);
    if (d->lc)
        cublasLtMatrixLayoutDestroy(d->lc);
    if (d->op)
        cublasLtMatmulDescDestroy(d->op);
}

static enum hm_status lt_fail(cublasStatus_t s, const char *what)
{
    return hm_fail(HM_ERR_DEVICE, "cuda: cublasLt %s failed: %s (%d)", what, cublasGetStatusString(s), (int)s);
}

#define LT_TRY(expr, what)                                                                         \
    do {                                                                                           \
        cublasStatus_t s_ = (expr);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            st = lt_fail(s_, what);                                                                \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

static cudaDataType_t lt_type(enum hm_dtype t)
{
    return t == HM_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static enum hm_status make_layout(cublasLtMatrixLayout_t *l, cudaDataType_t type, int64_t rows, int64_t cols,
                                  int64_t batch, int64_t stride)
{
    cublasStatus_t s = cublasLtMatrixLayoutCreate(l, type, (uint64_t)rows, (uint64_t)cols, rows);
    if (s != CUBLAS_STATUS_SUCCESS)
        return lt_fail(s, "matrix layout");
    if (batch > 1) {
        int32_t bc = (int32_t)batch;
        if ((s = cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc)) !=
                CUBLAS_STATUS_SUCCESS ||
            (s = cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                  sizeof stride)) != CUBLAS_STATUS_SUCCESS)
            return lt_fail(s, "batched layout");
    }
    return HM_OK;
}

template <typename TB, typename TC>
static __global__ void add_bias_kernel(TC *c, const TB *bias, int64_t rows, int64_t N)
{
    int64_t n = rows * N;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        hm_st(c, i, hm_ld(c, i) + hm_ld(bias, i % N));
}

/* One cuBLASLt call; `use_epilogue` false runs without the bias epilogue (the caller adds it).
 * a, b, bias have type `in`, c has type `out` (f32 or bf16). */
static enum hm_status matmul_launch(struct hm_cuda_ctx *cx, const void *a, const void *b, const void *bias, void *c,
                                    enum hm_dtype in, enum hm_dtype out, const struct hm_mm_dims *d, bool ta,
                                    bool tb, float alpha, float beta, bool use_epilogue, cudaStream_t stream,
                                    bool *used_epilogue)
{
    struct mm_descs ds = {0};
    enum hm_status st = HM_OK;
    cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasComputeType_t ct = cx->tf32 && in == HM_DTYPE_F32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cudaDataType_t tin = lt_type(in), tout = lt_type(out);
    bool epi = bias && use_epilogue && d->batch == 1 && ptr_align(bias) >= 16;
    struct mm_key key;
    memset(&key, 0, sizeof key);
    key = (struct mm_key){d->M, d->N, d->K, d->batch, ta, tb, epi, beta != 0.0f, cx->tf32, (int)in, (int)out,
                          {ptr_align(a), ptr_align(b), ptr_align(c)}};
    struct mm_entry *hit = NULL;
    for (int i = 0; i < cx->mm->n; i++)
        if (key_eq(&cx->mm->e[i].key, &key)) {
            hit = &cx->mm->e[i];
            break;
        }

    LT_TRY(cublasLtMatmulDescCreate(&ds.op, ct, CUDA_R_32F), "matmul descriptor");
    LT_TRY(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa), "transa");
    LT_TRY(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb), "transb");
    if (epi) {
        cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_BIAS;
        LT_TRY(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e), "epilogue");
        LT_TRY(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
               "bias pointer");
        LT_TRY(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &tin, sizeof tin),
               "bias type");
    }
    /* first operand = b: stored (K, N) row-major = (N, K) column-major, or (N, K) row-major if tb */
    if ((st = make_layout(&ds.la, tin, tb ? d->K : d->N, tb ? d->N : d->K, d->batch, d->K * d->N)) != HM_OK)
        goto out;
    /* second operand = a: stored (M, K) row-major = (K, M) column-major, or (K, M) row-major if ta */
    if ((st = make_layout(&ds.lb, tin, ta ? d->M : d->K, ta ? d->K : d->M, d->batch, d->M * d->K)) != HM_OK)
        goto out;
    if ((st = make_layout(&ds.lc, tout, d->N, d->M, d->batch, d->M * d->N)) != HM_OK)
        goto out;

    if (!hit) {
        LT_TRY(cublasLtMatmulPreferenceCreate(&ds.pref), "preference");
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(ds.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &cx->lt_ws_bytes,
                                                    sizeof cx->lt_ws_bytes),
               "workspace preference");
        /* A, B, C, D: our b is cuBLASLt's A (the operands are swapped), D aligns like C */
        uint32_t al[4] = {(uint32_t)key.align[1], (uint32_t)key.align[0], (uint32_t)key.align[2],
                          (uint32_t)key.align[2]};
        static const cublasLtMatmulPreferenceAttributes_t al_attr[4] = {
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
        for (int i = 0; i < 4; i++)
            LT_TRY(cublasLtMatmulPreferenceSetAttribute(ds.pref, al_attr[i], &al[i], sizeof al[i]),
                   "alignment preference");
        cublasLtMatmulHeuristicResult_t res;
        int found = 0;
        cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(cx->lt, ds.op, ds.la, ds.lb, ds.lc, ds.lc, ds.pref, 1,
                                                          &res, &found);
        if (s != CUBLAS_STATUS_SUCCESS || found == 0) {
            if (epi) { /* retry without the fused bias; the caller adds it */
                mm_descs_free(&ds);
                return matmul_launch(cx, a, b, bias, c, in, out, d, ta, tb, alpha, beta, false, stream,
                                     used_epilogue);
            }
            st = hm_fail(HM_ERR_DEVICE, "cuda: cublasLt found no algorithm for a %lldx%lldx%lld matmul "
                                        "(batch %lld)", (long long)d->M, (long long)d->N, (long long)d->K,
                         (long long)d->batch);
            goto out;
        }
        hit = &cx->mm->e[cx->mm->n < MM_CACHE ? cx->mm->n++ : (cx->mm->next++ % MM_CACHE)];
        hit->key = key;
        hit->algo = res.algo;
        hit->bias_in_epilogue = epi;
    }
    LT_TRY(cublasLtMatmul(cx->lt, ds.op, &alpha, b, ds.la, a, ds.lb, &beta, c, ds.lc, c, ds.lc, &hit->algo, cx->lt_ws,
                          cx->lt_ws_bytes, stream),
           "matmul");
    *used_epilogue = epi;
out:
    mm_descs_free(&ds);
    return st;
}

CUDA_KERNEL(matmul)
{
    struct hm_cuda_ctx *cx = hm_cuda_ctx_of(ex);
    const struct hm_tensor *a = dst->src[0], *b = dst->src[1], *bias = dst->src[2];
    bool ta = dst->op_params[1], tb = dst->op_params[2], acc = dst->acc & 1;
    struct hm_mm_dims d = hm_mm_dims_of(a, b, ta, tb);
    float alpha = hm_op_f32(dst, 0), beta = acc ? 1.0f : 0.0f;
    bool epi = false;
    if (b->type != a->type || (bias && bias->type != a->type))
        return hm_fail(HM_ERR_UNSUPPORTED, "cuda: matmul operands must share one dtype (%s, %s)",
                       hm_dtype_name(a->type), hm_dtype_name(b->type));
    enum hm_status st = matmul_launch(cx, a->data, b->data, bias ? bias->data : NULL, dst->data, a->type, dst->type,
                                      &d, ta, tb, alpha, beta, true, cx->stream, &epi);
    if (st != HM_OK)
        return st;
    if (bias && !epi) {
        int64_t rows = d.batch * d.M;
        HM_DISPATCH(bias->type, TB, HM_DISPATCH(dst->type, TC,
                    add_bias_kernel<<<hm_cuda_blocks(rows * d.N, HM_CUDA_THREADS), HM_CUDA_THREADS, 0,
                                      cx->stream>>>(PTR(TC, dst), CPTR(TB, bias), rows, d.N)));
        HM_CUDA_LAUNCHED();
    }
    return HM_OK;
}
