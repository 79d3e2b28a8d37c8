/* test-util.c - see testutil.h. */
#include "testutil.h"

#include "hermes/backend.h"
#include "hermes/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p = malloc(strlen(base) + 32);
    sprintf(p, "%s/hermes-test-XXXXXX", base);
    if (!mkdtemp(p))
        fail_msg("mkdtemp failed");
    return p;
}

void tu_rmdir(const char *path)
{
    char *cmd = malloc(strlen(path) + 16);
    sprintf(cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", path);
    free(cmd);
}

char *tu_tmpdir;

int tu_tmpdir_setup(void **state)
{
    (void)state;
    tu_tmpdir = tu_mkdtemp();
    return 0;
}

int tu_tmpdir_teardown(void **state)
{
    (void)state;
    tu_rmdir(tu_tmpdir);
    free(tu_tmpdir);
    tu_tmpdir = NULL;
    return 0;
}

char *tu_path(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

void tu_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

int tu_run(const char *cmd, char **out)
{
    char *full = malloc(strlen(cmd) + 16);
    sprintf(full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    free(full);
    assert_non_null(p);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int status = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int tu_cli(const char *args, char **out)
{
    char *cmd = malloc(strlen(HM_CLI_BIN) + strlen(args) + 8);
    sprintf(cmd, "'%s' %s", HM_CLI_BIN, args);
    int rc = tu_run(cmd, out);
    free(cmd);
    return rc;
}

int tu_cuda_device(void)
{
    const char *dev = getenv("HM_CUDA_DEVICE");
    int device = dev ? atoi(dev) : 0;
    struct hm_backend *probe = NULL;
    if (hm_backend_cuda_new(device, &probe) != HM_OK) {
        printf("SKIPPED: no CUDA device (%s)\n", hm_last_error());
        return -1;
    }
    hm_backend_free(probe);
    return device;
}

void tu_cpu_model(const struct hm_model_config *c, uint64_t seed, struct hm_backend **be,
                  struct hm_model **m)
{
    assert_int_equal(hm_backend_cpu_new(be), HM_OK);
    assert_int_equal(hm_model_new(c, *be, m), HM_OK);
    assert_int_equal(hm_model_init_weights(*m, seed), HM_OK);
}

struct hm_model_config tu_model_cfg(int V, int T, int C, int L, int NH, int NKV, int I,
                                    enum hm_activation act, bool bias, bool tied, float theta)
{
    struct hm_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "test");
    c.vocab_size = V, c.max_seq_len = T, c.hidden_size = C, c.num_layers = L, c.num_heads = NH;
    c.num_kv_heads = NKV, c.intermediate_size = I, c.dropout = 0.1f;
    c.layer_norm_eps = 1e-5f, c.rope_theta = theta, c.use_bias = bias, c.tie_embeddings = tied;
    c.activation = act;
    return c;
}

uint32_t tu_lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

void tu_randomise_weights(struct hm_model *m, uint32_t seed)
{
    struct hm_block *blk = hm_model_params(m);
    size_t n = hm_block_nbytes(blk) / sizeof(float);
    float *h = malloc(n * sizeof *h);
    for (int i = 0; i < hm_block_n_tensors(blk); i++) {
        const struct hm_tensor *t = hm_block_tensor(blk, i);
        float *p = h + hm_block_elem_offset(t);
        bool norm = strstr(t->name, "norm") != NULL;
        for (int64_t j = 0; j < hm_nelements(t); j++) {
            float u = ((float)tu_lcg(&seed) / 16777216.0f - 0.5f) * 0.52f; /* std 0.15 */
            p[j] = norm ? 1.0f + u : u;
        }
    }
    assert_int_equal(hm_buffer_set(hm_block_data(blk), 0, h, n * sizeof *h), HM_OK);
    free(h);
}

struct hm_model *tu_random_model(struct hm_backend *be, const struct hm_model_config *cfg,
                                 uint32_t seed)
{
    struct hm_model *m;
    assert_int_equal(hm_model_new(cfg, be, &m), HM_OK);
    tu_randomise_weights(m, seed);
    return m;
}

void tu_full_logits(struct hm_model *m, const int32_t *ids, int L, float *out)
{
    const struct hm_model_config *c = hm_model_config(m);
    struct hm_train_graph tg;
    assert_int_equal(hm_model_build_train_graph(m, 1, L, &tg), HM_OK);
    hm_graph_runtime(tg.graph)->training = false;
    int32_t *tgt = malloc((size_t)L * sizeof *tgt);
    for (int i = 0; i < L; i++)
        tgt[i] = HM_IGNORE_INDEX;
    assert_int_equal(hm_tensor_set(tg.ids, ids, (size_t)L * sizeof *ids), HM_OK);
    assert_int_equal(hm_tensor_set(tg.targets, tgt, (size_t)L * sizeof *tgt), HM_OK);
    assert_int_equal(hm_graph_forward(tg.graph), HM_OK);
    assert_int_equal(hm_tensor_get(tg.logits, out, (size_t)L * c->vocab_size * sizeof *out), HM_OK);
    free(tgt);
    hm_train_graph_free(&tg);
}
