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

/* Rows V-n_new .. V-1 of a (V, C) matrix = the mean of the rows before them. */
static void fill_mean_rows(float *w, int64_t V, int64_t C, int n_new)
{
    int64_t old = V - n_new;
    double *mean = hm_calloc((size_t)C, sizeof *mean);
    HM_ASSERT(mean); /* C doubles: a few KiB */
    for (int64_t r = 0; r < old; r++)
        for (int64_t c = 0; c < C; c++)
            mean[c] += w[r * C + c];
    for (int64_t r = old; r < V; r++)
        for (int64_t c = 0; c < C; c++)
            w[r * C + c] = (float)(mean[c] / (double)old);
    hm_free(mean);
}

static bool is_vocab_matrix(const char *name)
{
    return strcmp(name, "embedding.weight") == 0 || strcmp(name, "lm_head.weight") == 0;
}

/* NaN or Inf weights only ever give NaN logits: refuse them at load, naming the tensor. */
static enum hm_status check_finite(const char *path, const struct hm_tensor *t, const float *w)
{
    int64_t n = hm_nelements(t);
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(w[k]))
            return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value (%g at element "
                           "%lld)", path, t->name, w[k], (long long)k);
    return HM_OK;
}

static enum hm_status load_weights(struct hm_model *m, const char *path, int n_new)
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
        int64_t shape[HM_MAX_DIMS];
        bool grow = n_new > 0 && is_vocab_matrix(t->name);
        memcpy(shape, t->shape, sizeof shape);
        if (grow)
            shape[0] -= n_new;
        if ((st = hm_st_read_f32(f, t->name, t->n_dims, shape, host + hm_block_elem_offset(t))) != HM_OK)
            goto out;
        if (grow)
            fill_mean_rows(host + hm_block_elem_offset(t), t->shape[0], t->shape[1], n_new);
        if ((st = check_finite(path, t, host + hm_block_elem_offset(t))) != HM_OK)
            goto out;
    }
    if ((st = hm_buffer_set(hm_block_data(blk), 0, host, bytes)) == HM_OK)
        st = hm_model_weights_changed(m);
out:
    hm_free(host);
    hm_st_close(f);
    return st;
}

enum hm_status hm_model_load_weights(struct hm_model *m, const char *path)
{
    return load_weights(m, path, 0);
}

enum hm_status hm_model_load_weights_grow_vocab(struct hm_model *m, const char *path, int n_new)
{
    int V = hm_model_config(m)->vocab_size;
    if (n_new < 0 || n_new >= V)
        return hm_fail(HM_ERR_USAGE, "%s: cannot add %d tokens to a vocabulary of %d", path, n_new, V);
    return load_weights(m, path, n_new);
}
