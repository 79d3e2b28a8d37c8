/*
 * library-usage.c - what the original README's "Library Usage" section shows, through the public
 * C API alone (include/hermes/): train a tokenizer, make a config from a preset, build a model,
 * train it from a data loader, and generate. The tests build and run this program, so it cannot
 * go stale. Usage: example-library-usage [WORK_DIR] (default: a fresh folder under /tmp).
 */
#include <hermes/backend.h>
#include <hermes/config.h>
#include <hermes/dataset.h>
#include <hermes/gen.h>
#include <hermes/hermes.h>
#include <hermes/model.h>
#include <hermes/tokenizer.h>
#include <hermes/train.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        if ((call) != HM_OK) {                                                                     \
            fprintf(stderr, "error: %s\n", hm_last_error());                                       \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static bool print_token(hm_token id, void *user)
{
    const char *text;
    size_t len;
    if (hm_decode_stream_push(user, id, &text, &len) == HM_OK)
        fwrite(text, 1, len, stdout);
    return true;
}

int main(int argc, char **argv)
{
    char dir[256] = "/tmp/hermes-example-XXXXXX";
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    else if (!mkdtemp(dir))
        return 1;
    const char *text = "the quick brown fox jumps over the lazy dog. ";
    char corpus[300];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    FILE *f = fopen(corpus, "w");
    if (!f)
        return 1;
    for (int i = 0; i < 200; i++)
        fputs(text, f);
    fclose(f);

    /* 1. A tokenizer (or hm_tokenizer_load("tokenizer.json", &tok)). */
    struct hm_tokenizer_train_opts topt = hm_tokenizer_train_opts_default();
    topt.vocab_size = 300;
    const char *texts[] = {text};
    size_t lens[] = {strlen(text)};
    struct hm_tokenizer *tok;
    CHECK(hm_tokenizer_train(&topt, texts, lens, 1, &tok));

    /* 2. A config from a preset, with the tokenizer's vocabulary. */
    struct hm_model_config cfg;
    CHECK(hm_config_preset("nano", &cfg));
    cfg.vocab_size = (int)hm_tokenizer_vocab_size(tok);
    cfg.dropout = 0.0f;

    /* 3. A model on the CPU backend. */
    struct hm_backend *be;
    struct hm_model *model;
    CHECK(hm_backend_cpu_new(&be));
    CHECK(hm_model_new(&cfg, be, &model));
    CHECK(hm_model_init_weights(model, 42));
    printf("hermes %s: %s with %llu parameters\n", hm_version(), cfg.name,
           (unsigned long long)hm_model_param_count(model));

    /* 4. Data: documents -> token cache, then the training loop. */
    char cache[300];
    snprintf(cache, sizeof cache, "%s/tokens.bin", dir);
    const char *paths[] = {corpus};
    struct hm_dataset_opts dopt = hm_dataset_opts_default();
    dopt.paths = paths;
    dopt.n_paths = 1;
    dopt.cache_path = cache;
    struct hm_token_cache data;
    struct hm_dataset_info info;
    CHECK(hm_dataset_open(tok, &dopt, &data, &info));
    struct hm_train_opts opt = hm_train_opts_default();
    opt.output_dir = dir;
    opt.batch_size = 8, opt.seq_len = 32, opt.stride = 32, opt.epochs = 100, opt.max_steps = 150;
    opt.seed = 1, opt.val_split = 0.05, opt.log_every = 50, opt.eval_every = 0, opt.eval_batches = 1;
    opt.save_every = 0;
    opt.lr = (struct hm_lr_schedule){HM_LR_COSINE, 3e-3, 3e-4, 10, 0, 0};
    struct hm_train_summary sum;
    CHECK(hm_train(model, &data, NULL, &opt, NULL, NULL, NULL, &sum));
    printf("trained %ld steps: loss %.3f\n", sum.steps, sum.final_loss);

    /* 5. Generation: greedy, KV cache, streamed text. */
    hm_token prompt[16];
    size_t n;
    CHECK(hm_tokenizer_encode(tok, "the quick", 9, prompt, 16, &n));
    struct hm_sampler_opts sopt = hm_sampler_opts_default();
    sopt.temperature = 0.0f;
    struct hm_sampler *sampler;
    struct hm_decode_stream *ds;
    CHECK(hm_sampler_new(cfg.vocab_size, &sopt, &sampler));
    CHECK(hm_decode_stream_new(tok, true, &ds));
    struct hm_generate_opts gopt = hm_generate_opts_default();
    gopt.max_new_tokens = 12;
    struct hm_generate_stats stats;
    printf("the quick");
    CHECK(hm_generate(model, prompt, (int)n, &gopt, sampler, print_token, ds, &stats));
    printf("\n");

    hm_decode_stream_free(ds);
    hm_sampler_free(sampler);
    hm_token_cache_close(&data);
    hm_model_free(model);
    hm_backend_free(be);
    hm_tokenizer_free(tok);
    if (argc < 2) { /* our own temporary folder: leave nothing behind */
        const char *files[] = {"corpus.txt", "tokens.bin", "metrics.jsonl", "loss.svg",
                               "state.safetensors", "weights.safetensors"};
        char p[400];
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            snprintf(p, sizeof p, "%s/%s", dir, files[i]);
            remove(p);
        }
        remove(dir);
    }
    return 0;
}
