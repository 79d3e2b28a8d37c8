/*
 * checkpoint.c - model weights to and from safetensors under the original checkpoint names.
 * Saving stages the parameter block on the host once; loading reads every tensor (F32, BF16 or
 * F16, shape checked) into a host copy before anything reaches the backend, so a bad file leaves
 * the model as it was. A file with model tensors this config lacks is refused, not trimmed.
 */
#include "hermes/model.h"
#include "hermes/safetensors.h"
#include "util/util.h"

#include <math.h>
#include <string.h>

enum hm_status hm_model_save(const struct hm_model *m, const char *path, enum hm_save_dtype dt)
{
    if (hm_model_weights_released(m))
        return hm_fail(HM_ERR_USAGE, "%s: cannot save a bf16 inference model (its f32 weights were released)", path);
    struct hm_block *blk = hm_model_params(m);
    size_t bytes = hm_block_nbytes(blk);
    int n = hm_block_n_tensors(blk);
    float *host = hm_malloc(bytes);
    struct hm_st_entry *e = hm_calloc((size_t)n, sizeof *e);
    enum hm_status st = HM_OK;
    if (!host || !e) {
        st = hm_fail(HM_ERR_NOMEM, "%s: out of memory staging %zu bytes", path, bytes);
        goto out;
    }
    if ((st = hm_buffer_get(hm_block_data(blk), 0, host, bytes)) != HM_OK)
        goto out;
    for (int i = 0; i < n; i++) {
        struct hm_tensor *t = hm_block_tensor(blk, i);
        e[i].name = t->name;
        e[i].dtype = dt == HM_SAVE_BF16 ? HM_ST_BF16 : HM_ST_F32;
        e[i].ndim = t->n_dims;
        for (int d = 0; d < t->n_dims; d++)
            e[i].shape[d] = t->shape[d];
        e[i].data = host + hm_block_elem_offset(t);
        e[i].data_is_f32 = true;
    }
    st = hm_st_write(path, e, (size_t)n, NULL, 0);
out:
    hm_free(host);
    hm_free(e);
    return st;
}

/* Names the model's own tensors use; anything else in a file (optim.m, optim.v) is not ours. */
static bool in_model_namespace(const char *name)
{
    static const char *const prefixes[] = {"embedding.", "layers.", "norm.", "lm_head."};
    for (size_t i = 0; i < HM_ARRAY_LEN(prefixes); i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

enum hm_status hm_model_load_weights(struct hm_model *m, const char *path)
{
    if (hm_model_weights_released(m))
        return hm_model_weights_changed(m); /* the error: load before hm_model_set_dtype */
    struct hm_block *blk = hm_model_params(m);
    size_t bytes = hm_block_nbytes(blk);
    struct hm_st_file *f = NULL;
    float *host = NULL;
    enum hm_status st = hm_st_open(path, &f);
    if (st != HM_OK)
        return st;
    for (size_t i = 0; i < hm_st_count(f); i++) {
        const char *name = hm_st_at(f, i)->name;
        if (in_model_namespace(name) && !hm_model_param(m, name)) {
            st = hm_fail(HM_ERR_MISMATCH, "%s: tensor '%s' is not part of this model (%s embeddings, "
                         "%s, num_layers %d)", path, name, hm_model_config(m)->tie_embeddings ? "tied" : "untied",
                         hm_model_config(m)->use_bias ? "biases" : "no biases", hm_model_config(m)->num_layers);
            goto out;
        }
    }
    if (!(host = hm_malloc(bytes))) {
        st = hm_fail(HM_ERR_NOMEM, "%s: out of memory staging %zu bytes", path, bytes);
        goto out;
    }
    for (int i = 0; i < hm_block_n_tensors(blk); i++) {
        struct hm_tensor *t = hm_block_tensor(blk, i);
        float *w = host + hm_block_elem_offset(t);
        if ((st = hm_st_read_f32(f, t->name, t->n_dims, t->shape, w)) != HM_OK)
            goto out;
        /* NaN or Inf weights only ever give NaN logits: refuse them here, naming the tensor. */
        int64_t n = hm_nelements(t);
        for (int64_t k = 0; k < n; k++)
            if (!isfinite(w[k])) {
                st = hm_fail(HM_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value (%g at "
                             "element %lld)", path, t->name, w[k], (long long)k);
                goto out;
            }
    }
    if ((st = hm_buffer_set(hm_block_data(blk), 0, host, bytes)) == HM_OK)
        st = hm_model_weights_changed(m);
out:
    hm_free(host);
    hm_st_close(f);
    return st;
}
