/*
 * cuda-host.c - CUDA backend planning arithmetic and messages that need no GPU (see cuda-host.h).
 * Compiled into libhermes in every build, with or without the CUDA toolkit.
 */
#include "cuda-host.h"

#include "hermes/ops.h"

#include <stdio.h>

int hm_cuda_colsum_chunks(int64_t rows)
{
    if (rows <= HM_CUDA_COLSUM_ROWS)
        return 1;
    int64_t c = (rows + HM_CUDA_COLSUM_ROWS - 1) / HM_CUDA_COLSUM_ROWS;
    return c > HM_CUDA_COLSUM_MAX_CHUNKS ? HM_CUDA_COLSUM_MAX_CHUNKS : (int)c;
}

int64_t hm_cuda_colsum_rows_per_chunk(int64_t rows, int chunks)
{
    return (rows + chunks - 1) / chunks;
}

enum hm_status hm_cuda_attn_plan(int64_t hd, struct hm_cuda_attn_plan *out)
{
    if (hd < 1 || hd > HM_CUDA_ATTN_MAX_HD)
        return hm_fail(HM_ERR_UNSUPPORTED, "attention: head dim %lld is not supported on cuda "
                                           "(1..%d)", (long long)hd, HM_CUDA_ATTN_MAX_HD);
    struct hm_cuda_attn_plan p = {0};
    int per = (int)((hd + 31) / 32);
    p.hd = (int)hd;
    p.dpl = per <= 1 ? 1 : per <= 2 ? 2 : per <= 4 ? 4 : 8;
    p.rows = HM_CUDA_ATTN_ROWS;
    p.ld = (int)hd + 1;
    size_t tile = (size_t)HM_CUDA_ATTN_BC * (size_t)p.ld * sizeof(float);
    size_t qrows = (size_t)p.rows * (size_t)hd * sizeof(float);
    p.smem_fwd = 2 * tile + qrows;
    p.smem_bwd_kv = 4 * tile + 2 * (size_t)hd * sizeof(float);
    p.smem_bwd_q = 2 * tile + 2 * qrows;
    *out = p;
    return HM_OK;
}

size_t hm_cuda_workspace_bytes(const struct hm_tensor *node, size_t sort_temp_bytes)
{
    const struct hm_tensor *x = node->src[0];
    switch (node->op) {
    case HM_OP_REDUCE_ROWS: {
        int64_t n = hm_nelements(node), rows = hm_nelements(x) / n;
        if (rows <= 1)
            return 0;
        return hm_cuda_align((size_t)hm_cuda_colsum_chunks(rows) * (size_t)n * sizeof(float));
    }
    case HM_OP_RMS_NORM_BACK:
    case HM_OP_ADD_RMS_NORM_BACK: {
        const struct hm_tensor *xt = node->src[1];
        int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
        size_t b = hm_cuda_align((size_t)N * sizeof(float));
        if (node->src[node->op == HM_OP_RMS_NORM_BACK ? 3 : 5]) /* dw */
            b += hm_cuda_align((size_t)hm_cuda_colsum_chunks(N) * (size_t)C * sizeof(float));
        return b;
    }
    case HM_OP_EMBEDDING_BACK: {
        size_t N = (size_t)hm_nelements(node->src[1]);
        return 3 * hm_cuda_align(N * sizeof(int32_t)) + hm_cuda_align(sort_temp_bytes);
    }
    case HM_OP_ATTENTION_BACK: {
        const struct hm_tensor *q = node->src[1];
        return hm_cuda_align((size_t)(q->shape[0] * q->shape[2] * q->shape[1]) * sizeof(float));
    }
    case HM_OP_CROSS_ENTROPY:
        return hm_cuda_align((size_t)hm_nrows(x) * sizeof(double)) + hm_cuda_align(sizeof(int64_t));
    case HM_OP_CROSS_ENTROPY_BACK:
        return hm_cuda_align(sizeof(int64_t));
    default:
        return 0;
    }
}

char *hm_cuda_fmt_bytes(char *buf, size_t cap, double bytes)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%.0f B", bytes);
    else
        snprintf(buf, cap, bytes < 10.0 ? "%.2f %s" : "%.1f %s", bytes, unit[u]);
    return buf;
}

char *hm_cuda_oom_message(char *buf, size_t cap, int device, size_t requested, size_t free_bytes,
                          size_t total_bytes)
{
    char r[32], f[32], t[32];
    hm_cuda_fmt_bytes(r, sizeof r, (double)requested);
    hm_cuda_fmt_bytes(f, sizeof f, (double)free_bytes);
    hm_cuda_fmt_bytes(t, sizeof t, (double)total_bytes);
    snprintf(buf, cap,
             "cuda:%d: out of device memory: requested %s (%zu bytes) with %s free of %s; "
             "try a smaller --batch-size (-b) or --seq-len",
             device, r, requested, f, t);
    return buf;
}
