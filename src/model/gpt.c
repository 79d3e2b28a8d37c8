/*
 * gpt.c - the transformer: parameter declaration, initialisation, and the one forward builder
 * that serves the training graph and the inference (KV-cache) graphs.
 *
 * Layer (pre-norm):  x = x + drop(o_proj(attn(rope(q), rope(k), v)))     on rms_norm(x)
 *                    x = x + drop(down(gelu(up(h))))  or  drop(down(silu(gate(h)) * up(h)))
 * Each residual add and the norm after it are one node (hm_add_rms_norm).
 * Parameters are declared weight-decayed first (embedding, every matrix, lm_head) and then the
 * norm weights and biases, so AdamW runs over two contiguous ranges. In bf16 the graphs read a
 * rounded copy of every parameter (weight()); backward still accumulates into the f32 gradients
 * and AdamW updates the f32 masters, after which the copies are refreshed.
 */
#include "hermes/model.h"
#include "util/util.h"

#include <math.h>
#include <string.h>

struct layer {
    struct hm_tensor *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo;
    struct hm_tensor *w_gate, *w_up, *w_down, *b_gate, *b_up, *b_down;
    struct hm_tensor *norm_in, *norm_post;
};

struct hm_model {
    struct hm_model_config cfg;
    struct hm_backend *be;
    struct hm_block *params;
    enum hm_dtype dtype;    /* of the weights the graphs read, of activations and the KV cache */
    struct hm_block *copies; /* bf16: rounded copies of params, refreshed when they change */
    bool released;           /* bf16 inference: the f32 params were freed, the copies are all */
    struct hm_tensor *embedding, *lm_head, *norm;
    struct layer *layers;
    uint64_t n_decay;
    enum hm_param_role *roles; /* per parameter, in block order (allocated with the model) */
    int n_roles, cap_roles;
};

struct hm_kv_cache {
    struct hm_model *model;
    struct hm_block *block;
    struct hm_tensor **k, **v; /* per layer (n_slots, ctx, NKV, HD) */
    int len, n_slots;
};

static struct hm_tensor *add_param(struct hm_model *m, enum hm_param_role role, int n_dims,
                                   int64_t d0, int64_t d1, const char *fmt, int layer)
{
    char name[96];
    snprintf(name, sizeof name, fmt, layer);
    int64_t shape[2] = {d0, d1};
    HM_ASSERT(m->n_roles < m->cap_roles);
    m->roles[m->n_roles++] = role;
    return hm_block_add(m->params, name, HM_DTYPE_F32, n_dims, shape);
}

/* Declaration order is the memory layout: matrices (decayed) first, then vectors. */
static void declare_params(struct hm_model *m)
{
    const struct hm_model_config *c = &m->cfg;
    int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    int64_t KV = (int64_t)c->num_kv_heads * hm_config_head_dim(c);
    bool swiglu = c->activation == HM_ACT_SWIGLU;
    const enum hm_param_role MAT = HM_PARAM_MATRIX, RES = HM_PARAM_RESIDUAL_MATRIX,
                             GAIN = HM_PARAM_NORM_GAIN, BIAS = HM_PARAM_BIAS;
    m->embedding = add_param(m, HM_PARAM_EMBEDDING, 2, V, C, "embedding.weight", 0);
    for (int i = 0; i < c->num_layers; i++) {
        struct layer *l = &m->layers[i];
        l->wq = add_param(m, MAT, 2, C, C, "layers.%d.attention.q_proj.weight", i);
        l->wk = add_param(m, MAT, 2, KV, C, "layers.%d.attention.k_proj.weight", i);
        l->wv = add_param(m, MAT, 2, KV, C, "layers.%d.attention.v_proj.weight", i);
        l->wo = add_param(m, RES, 2, C, C, "layers.%d.attention.o_proj.weight", i);
        if (swiglu)
            l->w_gate = add_param(m, MAT, 2, I, C, "layers.%d.feed_forward.gate_proj.weight", i);
        l->w_up = add_param(m, MAT, 2, I, C, "layers.%d.feed_forward.up_proj.weight", i);
        l->w_down = add_param(m, RES, 2, C, I, "layers.%d.feed_forward.down_proj.weight", i);
    }
    if (!c->tie_embeddings)
        m->lm_head = add_param(m, HM_PARAM_HEAD, 2, V, C, "lm_head.weight", 0);
    m->n_decay = 0;
    for (int i = 0; i < hm_block_n_tensors(m->params); i++)
        m->n_decay += (uint64_t)hm_nelements(hm_block_tensor(m->params, i));
    for (int i = 0; i < c->num_layers; i++) {
        struct layer *l = &m->layers[i];
        l->norm_in = add_param(m, GAIN, 1, C, 1, "layers.%d.input_layernorm.weight", i);
        l->norm_post = add_param(m, GAIN, 1, C, 1, "layers.%d.post_attention_layernorm.weight", i);
        if (!c->use_bias)
            continue;
        l->bq = add_param(m, BIAS, 1, C, 1, "layers.%d.attention.q_proj.bias", i);
        l->bk = add_param(m, BIAS, 1, KV, 1, "layers.%d.attention.k_proj.bias", i);
        l->bv = add_param(m, BIAS, 1, KV, 1, "layers.%d.attention.v_proj.bias", i);
        l->bo = add_param(m, BIAS, 1, C, 1, "layers.%d.attention.o_proj.bias", i);
        if (swiglu)
            l->b_gate = add_param(m, BIAS, 1, I, 1, "layers.%d.feed_forward.gate_proj.bias", i);
        l->b_up = add_param(m, BIAS, 1, I, 1, "layers.%d.feed_forward.up_proj.bias", i);
        l->b_down = add_param(m, BIAS, 1, C, 1, "layers.%d.feed_forward.down_proj.bias", i);
    }
    m->norm = add_param(m, HM_PARAM_NORM_GAIN, 1, C, 1, "norm.weight", 0);
}

static enum hm_status model_create(const struct hm_model_config *cfg, struct hm_backend *be,
                                   bool with_grads, struct hm_model **out)
{
    enum hm_status st = hm_config_validate(cfg);
    if (st != HM_OK)
        return st;
    int cap_roles = 3 + 16 * cfg->num_layers; /* at most 16 tensors per layer */
    struct hm_model *m = hm_calloc(1, sizeof *m + (size_t)cap_roles * sizeof *m->roles);
    if (!m)
        return hm_fail(HM_ERR_NOMEM, "out of memory creating the model");
    m->roles = (enum hm_param_role *)(m + 1);
    m->cap_roles = cap_roles;
    m->cfg = *cfg;
    m->be = be;
    m->dtype = HM_DTYPE_F32;
    m->layers = hm_calloc((size_t)cfg->num_layers, sizeof *m->layers);
    if (!m->layers) {
        hm_free(m);
        return hm_fail(HM_ERR_NOMEM, "out of memory creating the model");
    }
    if ((st = hm_block_new(with_grads, &m->params)) != HM_OK)
        goto fail;
    declare_params(m);
    if (be && (st = hm_block_alloc(m->params, be)) != HM_OK) {
        hm_fail(st, "model %s (%llu parameters): %s", cfg->name[0] ? cfg->name : "(config)",
                (unsigned long long)hm_config_param_count(cfg), hm_last_error());
        goto fail;
    }
    HM_ASSERT(hm_model_param_count(m) == hm_config_param_count(cfg));
    *out = m;
    return HM_OK;
fail:
    hm_model_free(m);
    return st;
}

enum hm_status hm_model_new(const struct hm_model_config *cfg, struct hm_backend *be,
                            struct hm_model **out)
{
    return model_create(cfg, be, true, out);
}

enum hm_status hm_model_new_infer(const struct hm_model_config *cfg, struct hm_backend *be,
                                  struct hm_model **out)
{
    return model_create(cfg, be, false, out);
}

void hm_model_free(struct hm_model *m)
{
    if (!m)
        return;
    hm_block_free(m->copies);
    hm_block_free(m->params);
    hm_free(m->layers);
    hm_free(m);
}

enum hm_param_role hm_model_param_role(const struct hm_model *m, int i)
{
    return i >= 0 && i < m->n_roles ? m->roles[i] : HM_PARAM_UNKNOWN;
}

enum hm_status hm_model_set_dtype(struct hm_model *m, enum hm_dtype dtype)
{
    if (dtype != HM_DTYPE_F32 && dtype != HM_DTYPE_BF16)
        return hm_fail(HM_ERR_USAGE, "model dtype must be f32 or bf16, not %s", hm_dtype_name(dtype));
    if (dtype == m->dtype)
        return HM_OK;
    hm_block_free(m->copies);
    m->copies = NULL;
    m->dtype = dtype;
    if (dtype == HM_DTYPE_F32 || !m->be) /* declare-only models plan with m->dtype alone */
        return HM_OK;
    if (m->released)
        return hm_fail(HM_ERR_USAGE, "this bf16 inference model has released its f32 weights");
    enum hm_status st = hm_block_new_copy(m->params, dtype, m->be, &m->copies);
    if (st == HM_OK)
        st = hm_model_weights_changed(m);
    if (st != HM_OK) {
        hm_block_free(m->copies);
        m->copies = NULL;
        m->dtype = HM_DTYPE_F32;
        return st;
    }
    if (!hm_block_grads(m->params)) { /* inference: nothing will update the masters again */
        hm_block_release(m->params);
        m->released = true;
    }
    return HM_OK;
}

enum hm_dtype hm_model_dtype(const struct hm_model *m)
{
    return m->dtype;
}

bool hm_model_weights_released(const struct hm_model *m)
{
    return m->released;
}

enum hm_status hm_model_weights_changed(struct hm_model *m)
{
    if (m->released)
        return hm_fail(HM_ERR_USAGE, "this bf16 inference model has released its f32 weights: load "
                                     "or change weights before hm_model_set_dtype");
    return m->copies ? hm_block_copy_refresh(m->copies, m->params) : HM_OK;
}

/* The tensor the graphs read for parameter p: p itself, or its bf16 copy. In a declare-only
 * bf16 model (memory planning) a stand-in of the right dtype takes its place. */
static struct hm_tensor *weight(struct hm_model *m, struct hm_ctx *ctx, struct hm_tensor *p)
{
    if (!p || m->dtype == p->type)
        return p;
    if (m->copies)
        return hm_block_tensor(m->copies, p->id);
    struct hm_tensor *t = hm_new_tensor(ctx, m->dtype, p->n_dims, p->shape);
    t->flags |= p->flags & (HM_FLAG_PARAM | HM_FLAG_BLOCK);
    t->grad = p->grad;
    return t;
}

const struct hm_model_config *hm_model_config(const struct hm_model *m)
{
    return &m->cfg;
}

struct hm_backend *hm_model_backend(const struct hm_model *m)
{
    return m->be;
}

struct hm_block *hm_model_params(const struct hm_model *m)
{
    return m->params;
}

uint64_t hm_model_n_decay(const struct hm_model *m)
{
    return m->n_decay;
}

uint64_t hm_model_param_count(const struct hm_model *m)
{
    uint64_t n = 0;
    for (int i = 0; i < hm_block_n_tensors(m->params); i++)
        n += (uint64_t)hm_nelements(hm_block_tensor(m->params, i));
    return n;
}

struct hm_tensor *hm_model_param(const struct hm_model *m, const char *name)
{
    for (int i = 0; i < hm_block_n_tensors(m->params); i++) {
        struct hm_tensor *t = hm_block_tensor(m->params, i);
        if (strcmp(t->name, name) == 0)
            return t;
    }
    return NULL;
}

/* N(0, std) into p[0..n), from a stream that depends only on (seed, tensor, chunk): chunks run in
 * parallel and the result is the same at any thread count. */
static void fill_normal(float *p, int64_t n, float std, uint64_t seed, int tensor)
{
    enum { CHUNK = 1 << 16 };
    int64_t n_chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n_chunks; c++) {
        struct hm_rng rng;
        hm_rng_seed(&rng, seed ^ ((uint64_t)tensor << 40) ^ ((uint64_t)c * 0x9e3779b97f4a7c15ull));
        int64_t end = HM_MIN(n, (c + 1) * CHUNK);
        for (int64_t j = c * CHUNK; j < end; j += 2) {
            /* Box-Muller: both outputs of each pair */
            double u1 = hm_rng_uniform(&rng), u2 = hm_rng_uniform(&rng);
            double r = sqrt(-2.0 * log(u1 > 1e-300 ? u1 : 1e-300)), a = 6.283185307179586 * u2;
            p[j] = std * (float)(r * cos(a));
            if (j + 1 < end)
                p[j + 1] = std * (float)(r * sin(a));
        }
    }
}

enum hm_status hm_model_init_weights(struct hm_model *m, uint64_t seed)
{
    if (m->released)
        return hm_model_weights_changed(m); /* the error */
    /* One host staging buffer for the whole block, filled tensor by tensor in layout order. */
    size_t n = hm_block_nbytes(m->params) / sizeof(float);
    float *host = hm_malloc(n * sizeof(float));
    if (!host)
        return hm_fail(HM_ERR_NOMEM, "out of memory initialising %zu parameters", n);
    float resid_scale = 1.0f / sqrtf(2.0f * (float)m->cfg.num_layers);
    for (int i = 0; i < hm_block_n_tensors(m->params); i++) {
        struct hm_tensor *t = hm_block_tensor(m->params, i);
        float *p = host + hm_block_elem_offset(t);
        int64_t cnt = hm_nelements(t);
        switch (m->roles[i]) {
        case HM_PARAM_EMBEDDING:
        case HM_PARAM_MATRIX:
        case HM_PARAM_HEAD:
            fill_normal(p, cnt, 0.02f, seed, i);
            break;
        case HM_PARAM_RESIDUAL_MATRIX:
            fill_normal(p, cnt, 0.02f * resid_scale, seed, i);
            break;
        case HM_PARAM_NORM_GAIN:
            for (int64_t j = 0; j < cnt; j++)
                p[j] = 1.0f;
            break;
        case HM_PARAM_BIAS:
        case HM_PARAM_UNKNOWN:
            memset(p, 0, (size_t)cnt * sizeof *p);
            break;
        }
    }
    enum hm_status st = hm_buffer_set(hm_block_data(m->params), 0, host, n * sizeof(float));
    hm_free(host);
    return st == HM_OK ? hm_model_weights_changed(m) : st;
}

/* ---- the forward builder ------------------------------------------------------------------ */

struct build {
    struct hm_ctx *ctx;
    int B, T;
    bool training;
    struct hm_kv_cache *cache; /* inference only */
    struct hm_tensor *doc_start; /* packed training windows, or NULL */
    /* batched serving: i32 (T) KV slot and position of every row (B = 1), or NULL */
    struct hm_tensor *slot, *pos;
    bool row_invariant; /* linear layers through hm_linear_rows */
};

static struct hm_tensor *linear(struct build *b, struct hm_tensor *x, struct hm_tensor *w,
                                struct hm_tensor *bias)
{
    return b->row_invariant ? hm_linear_rows(b->ctx, x, w, bias) : hm_linear(b->ctx, x, w, bias);
}

static struct hm_tensor *heads(struct build *b, struct hm_tensor *x, int n_heads, int hd)
{
    return hm_reshape(b->ctx, x, 4, (int64_t[]){b->B, b->T, n_heads, hd});
}

/*
 * Layer i on the residual stream *x, whose input norm h = rms_norm(*x) the previous step already
 * computed. Each residual add is fused with the norm that reads its sum (hm_add_rms_norm): the
 * attention branch's with post_attention_layernorm, the MLP branch's with the next layer's
 * input_layernorm, or the final norm after the last layer. Returns that last normalised output;
 * *x is the new residual stream.
 */
static struct hm_tensor *layer_forward(struct hm_model *m, struct build *b, int i, struct hm_tensor **x,
                                       struct hm_tensor *h)
{
    const struct hm_model_config *c = &m->cfg;
    struct layer *l = &m->layers[i];
    struct hm_ctx *ctx = b->ctx;
    int HD = hm_config_head_dim(c);
    float p = b->training ? c->dropout : 0.0f;

#define W(p) weight(m, ctx, (p))
    struct hm_tensor *q = heads(b, linear(b, h, W(l->wq), W(l->bq)), c->num_heads, HD);
    struct hm_tensor *k = heads(b, linear(b, h, W(l->wk), W(l->bk)), c->num_kv_heads, HD);
    struct hm_tensor *v = heads(b, linear(b, h, W(l->wv), W(l->bv)), c->num_kv_heads, HD);
    q = hm_rope_at(ctx, q, c->rope_theta, b->pos);
    k = hm_rope_at(ctx, k, c->rope_theta, b->pos);
    if (b->cache) {
        k = hm_kv_write_at(ctx, b->cache->k[i], k, b->slot, b->pos);
        v = hm_kv_write_at(ctx, b->cache->v[i], v, b->slot, b->pos);
    }
    struct hm_tensor *a = b->slot ? hm_attention_at(ctx, q, k, v, b->slot, b->pos)
                                  : hm_attention_docs(ctx, q, k, v, b->doc_start);
    a = hm_reshape(ctx, a, 3, (int64_t[]){b->B, b->T, c->hidden_size});
    struct hm_tensor *o = hm_dropout(ctx, linear(b, a, W(l->wo), W(l->bo)), p, i * 4 + 1);
    h = hm_add_rms_norm(ctx, *x, o, W(l->norm_post), c->layer_norm_eps, x);

    struct hm_tensor *f;
    if (c->activation == HM_ACT_SWIGLU)
        f = hm_swiglu(ctx, linear(b, h, W(l->w_gate), W(l->b_gate)),
                      linear(b, h, W(l->w_up), W(l->b_up)));
    else
        f = hm_gelu(ctx, linear(b, h, W(l->w_up), W(l->b_up)));
    f = hm_dropout(ctx, linear(b, f, W(l->w_down), W(l->b_down)), p, i * 4 + 2);
    struct hm_tensor *next_norm = i + 1 < c->num_layers ? m->layers[i + 1].norm_in : m->norm;
    h = hm_add_rms_norm(ctx, *x, f, W(next_norm), c->layer_norm_eps, x);
#undef W
    return h;
}

/* ids (B, T) -> final hidden states (B, T, C) after the last norm. */
static struct hm_tensor *trunk_forward(struct hm_model *m, struct build *b, struct hm_tensor *ids)
{
    const struct hm_model_config *c = &m->cfg;
    struct hm_tensor *x = hm_embedding(b->ctx, weight(m, b->ctx, m->embedding), ids);
    x = hm_dropout(b->ctx, x, b->training ? c->dropout : 0.0f, 0);
    struct hm_tensor *h = hm_rms_norm(b->ctx, x, weight(m, b->ctx, m->layers[0].norm_in), c->layer_norm_eps);
    for (int i = 0; i < c->num_layers; i++)
        h = layer_forward(m, b, i, &x, h);
    return h;
}

static struct hm_tensor *lm_head(struct hm_model *m, struct build *b, struct hm_tensor *x)
{
    return linear(b, x, weight(m, b->ctx, m->lm_head ? m->lm_head : m->embedding), NULL);
}

/* Forward, loss and backward nodes for (B, T); planning is left to the caller. */
static enum hm_status build_train_nodes(struct hm_model *m, int B, int T, bool packed, struct hm_train_graph *out)
{
    memset(out, 0, sizeof *out);
    const struct hm_model_config *c = &m->cfg;
    if (B < 1 || T < 1)
        return hm_fail(HM_ERR_USAGE, "batch size %d and sequence length %d must be positive", B, T);
    if (T > c->max_seq_len)
        return hm_fail(HM_ERR_MISMATCH, "sequence length %d exceeds the model's max_seq_len %d", T,
                       c->max_seq_len);
    if (!m->embedding->grad) /* declared without gradients */
        return hm_fail(HM_ERR_USAGE, "this model was created for inference (hm_model_new_infer): "
                                     "it has no gradients to train");
    enum hm_status st = hm_ctx_new(&out->ctx);
    if (st != HM_OK)
        return st;
    struct build b = {out->ctx, B, T, true, NULL, NULL, NULL, NULL, false};
    out->B = B;
    out->T = T;
    if (packed) {
        b.doc_start = out->doc_start = hm_new_input(out->ctx, HM_DTYPE_I32, 2, (int64_t[]){B, T});
        hm_tensor_set_name(out->doc_start, "doc_start");
    }
    out->ids = hm_new_input(out->ctx, HM_DTYPE_I32, 2, (int64_t[]){B, T});
    out->targets = hm_new_input(out->ctx, HM_DTYPE_I32, 2, (int64_t[]){B, T});
    hm_tensor_set_name(out->ids, "input_ids");
    hm_tensor_set_name(out->targets, "targets");
    struct hm_tensor *x = trunk_forward(m, &b, out->ids);
    out->logits = lm_head(m, &b, x);
    hm_tensor_set_name(out->logits, "logits");
    struct hm_tensor *flat = hm_reshape(out->ctx, out->logits, 2, (int64_t[]){(int64_t)B * T, c->vocab_size});
    out->loss = hm_cross_entropy(out->ctx, flat, out->targets, HM_IGNORE_INDEX);
    hm_tensor_set_name(out->loss, "loss");
    if ((st = hm_graph_new(out->ctx, &out->graph)) != HM_OK)
        return st;
    /* The logits are not a graph output: cross_entropy_back then writes dlogits over them in
     * place, saving a (B, T, V) buffer (131 MB for gpt2-small at B=4, T=256, V=32000). */
    hm_graph_build_forward(out->graph, out->loss);
    return hm_graph_build_backward(out->graph, out->loss);
}

static enum hm_status build_train_graph(struct hm_model *m, int B, int T, bool packed, struct hm_train_graph *out)
{
    enum hm_status st = build_train_nodes(m, B, T, packed, out);
    if (st == HM_OK)
        st = hm_graph_plan(out->graph, m->be);
    if (st != HM_OK)
        hm_train_graph_free(out);
    return st;
}

enum hm_status hm_model_build_train_graph(struct hm_model *m, int B, int T, struct hm_train_graph *out)
{
    return build_train_graph(m, B, T, false, out);
}

enum hm_status hm_model_build_packed_train_graph(struct hm_model *m, int B, int T, struct hm_train_graph *out)
{
    return build_train_graph(m, B, T, true, out);
}

enum hm_status hm_model_plan_train_bytes(struct hm_model *m, struct hm_backend *be, int B, int T,
                                         size_t *bytes)
{
    struct hm_train_graph tg;
    enum hm_status st = build_train_nodes(m, B, T, false, &tg);
    if (st == HM_OK)
        st = hm_graph_plan_dry(tg.graph, be, bytes);
    hm_train_graph_free(&tg);
    return st;
}

void hm_train_graph_free(struct hm_train_graph *tg)
{
    hm_graph_free(tg->graph);
    hm_ctx_free(tg->ctx);
    memset(tg, 0, sizeof *tg);
}

/* ---- inference ---------------------------------------------------------------------------- */

enum hm_status hm_kv_cache_new(struct hm_model *m, int ctx_len, struct hm_kv_cache **out)
{
    return hm_kv_cache_new_slots(m, 1, ctx_len, out);
}

enum hm_status hm_kv_cache_new_slots(struct hm_model *m, int n_slots, int ctx_len,
                                     struct hm_kv_cache **out)
{
    const struct hm_model_config *c = &m->cfg;
    if (ctx_len < 1 || ctx_len > c->max_seq_len)
        return hm_fail(HM_ERR_USAGE, "KV cache length %d must be in [1, max_seq_len %d]", ctx_len,
                       c->max_seq_len);
    if (n_slots < 1)
        return hm_fail(HM_ERR_USAGE, "KV cache slots %d must be positive", n_slots);
    struct hm_kv_cache *kc = hm_calloc(1, sizeof *kc);
    if (!kc)
        return hm_fail(HM_ERR_NOMEM, "out of memory creating the KV cache");
    kc->model = m;
    kc->len = ctx_len;
    kc->n_slots = n_slots;
    kc->k = hm_calloc((size_t)c->num_layers, sizeof *kc->k);
    kc->v = hm_calloc((size_t)c->num_layers, sizeof *kc->v);
    enum hm_status st = HM_OK;
    if (!kc->k || !kc->v) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory creating the KV cache");
        goto fail;
    }
    if ((st = hm_block_new(false, &kc->block)) != HM_OK)
        goto fail;
    int64_t shape[4] = {n_slots, ctx_len, c->num_kv_heads, hm_config_head_dim(c)};
    for (int i = 0; i < c->num_layers; i++) {
        char name[64];
        snprintf(name, sizeof name, "cache.%d.k", i);
        kc->k[i] = hm_block_add(kc->block, name, m->dtype, 4, shape);
        snprintf(name, sizeof name, "cache.%d.v", i);
        kc->v[i] = hm_block_add(kc->block, name, m->dtype, 4, shape);
    }
    if ((st = hm_block_alloc(kc->block, m->be)) != HM_OK)
        goto fail;
    *out = kc;
    return HM_OK;
fail:
    hm_kv_cache_free(kc);
    return st;
}

void hm_kv_cache_free(struct hm_kv_cache *c)
{
    if (!c)
        return;
    hm_block_free(c->block);
    hm_free(c->k);
    hm_free(c->v);
    hm_free(c);
}

int hm_kv_cache_len(const struct hm_kv_cache *c)
{
    return c->len;
}

int hm_kv_cache_slots(const struct hm_kv_cache *c)
{
    return c->n_slots;
}

size_t hm_kv_cache_bytes(const struct hm_kv_cache *c)
{
    return hm_block_nbytes(c->block);
}

/* The forward nodes up to `out` as a graph, dropout off, planned on the model's backend. */
static enum hm_status plan_inference(struct hm_model *m, struct hm_ctx *ctx, struct hm_tensor *out,
                                     struct hm_graph **g)
{
    enum hm_status st = hm_graph_new(ctx, g);
    if (st != HM_OK)
        return st;
    hm_graph_build_forward(*g, out);
    hm_graph_runtime(*g)->training = false;
    return hm_graph_plan(*g, m->be);
}

enum hm_status hm_model_build_infer_graph(struct hm_model *m, struct hm_kv_cache *cache, int T,
                                          struct hm_infer_graph *out)
{
    memset(out, 0, sizeof *out);
    if (T < 1 || T > cache->len)
        return hm_fail(HM_ERR_USAGE, "%d new tokens do not fit a KV cache of %d positions", T, cache->len);
    if (cache->n_slots != 1)
        return hm_fail(HM_ERR_USAGE, "a KV cache of %d slots is for batch graphs "
                       "(hm_model_build_batch_graph), not batch-1 generation", cache->n_slots);
    enum hm_status st = hm_ctx_new(&out->ctx);
    if (st != HM_OK)
        return st;
    struct build b = {out->ctx, 1, T, false, cache, NULL, NULL, NULL, false};
    out->T = T;
    out->ids = hm_new_input(out->ctx, HM_DTYPE_I32, 2, (int64_t[]){1, T});
    struct hm_tensor *x = trunk_forward(m, &b, out->ids);
    /* Only the last position's logits are needed: slice before the LM head. */
    x = hm_reshape(out->ctx, x, 2, (int64_t[]){T, m->cfg.hidden_size});
    x = hm_slice(out->ctx, x, 0, T - 1, 1);
    struct hm_tensor *logits = lm_head(m, &b, x);
    out->logits = hm_reshape(out->ctx, logits, 1, (int64_t[]){m->cfg.vocab_size});
    if ((st = plan_inference(m, out->ctx, out->logits, &out->graph)) != HM_OK)
        hm_infer_graph_free(out);
    return st;
}

enum hm_status hm_infer_run(struct hm_infer_graph *g, const hm_token *ids, int pos)
{
    enum hm_status st = hm_tensor_set(g->ids, ids, (size_t)g->T * sizeof *ids);
    if (st != HM_OK)
        return st;
    hm_graph_runtime(g->graph)->pos = pos;
    return hm_graph_forward(g->graph);
}

void hm_infer_graph_free(struct hm_infer_graph *g)
{
    hm_graph_free(g->graph);
    hm_ctx_free(g->ctx);
    memset(g, 0, sizeof *g);
}

/* ---- batched serving ---------------------------------------------------------------------- */

enum hm_status hm_model_build_batch_graph(struct hm_model *m, struct hm_kv_cache *cache, int N,
                                          int M, bool row_invariant, struct hm_batch_graph *out)
{
    memset(out, 0, sizeof *out);
    if (N < 1 || M < 1 || M > N)
        return hm_fail(HM_ERR_USAGE, "batch graph: %d rows and %d logits rows: need 1 <= M <= N",
                       N, M);
    enum hm_status st = hm_ctx_new(&out->ctx);
    if (st != HM_OK)
        return st;
    struct hm_ctx *ctx = out->ctx;
    out->N = N;
    out->M = M;
    out->ids = hm_new_input(ctx, HM_DTYPE_I32, 2, (int64_t[]){1, N});
    out->slot = hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){N});
    out->pos = hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){N});
    out->out_rows = hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){M});
    struct build b = {ctx, 1, N, false, cache, NULL, out->slot, out->pos, row_invariant};
    struct hm_tensor *x = trunk_forward(m, &b, out->ids);
    /* Only the rows that sample need logits: gather them (an embedding lookup over the hidden
     * states is a row gather) before the LM head. */
    x = hm_reshape(ctx, x, 2, (int64_t[]){N, m->cfg.hidden_size});
    x = hm_embedding(ctx, x, out->out_rows);
    out->logits = lm_head(m, &b, x);
    if ((st = plan_inference(m, ctx, out->logits, &out->graph)) != HM_OK)
        hm_batch_graph_free(out);
    return st;
}

enum hm_status hm_batch_run(struct hm_batch_graph *g, const hm_token *ids, const int32_t *slot,
                            const int32_t *pos, const int32_t *out_rows)
{
    size_t n = (size_t)g->N * sizeof(int32_t);
    enum hm_status st;
    if ((st = hm_tensor_set(g->ids, ids, n)) != HM_OK ||
        (st = hm_tensor_set(g->slot, slot, n)) != HM_OK ||
        (st = hm_tensor_set(g->pos, pos, n)) != HM_OK ||
        (st = hm_tensor_set(g->out_rows, out_rows, (size_t)g->M * sizeof(int32_t))) != HM_OK)
        return st;
    return hm_graph_forward(g->graph);
}

void hm_batch_graph_free(struct hm_batch_graph *g)
{
    hm_graph_free(g->graph);
    hm_ctx_free(g->ctx);
    memset(g, 0, sizeof *g);
}
