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

static bool print_token(int32_t id, void *user)
{
    const char *text;
    size_t len;
    if (hm_decode_stream_push(user, (uint32_t)id, &text, &len) == HM_OK)
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
    const char *specials[] = {"<pad>", "<bos>", "<eos>", "<unk>"};
    struct hm_tokenizer_train_opts topt = {.vocab_size = 300, .min_frequency = 2,
                                           .special_tokens = specials, .n_special_tokens = 4};
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
    struct hm_dataset_opts dopt = {paths, 1, "text", cache, 0};
    struct hm_token_cache data;
    struct hm_dataset_info info;
    CHECK(hm_dataset_open(tok, &dopt, &data, &info));
    struct hm_train_opts opt = {
        .output_dir = dir, .batch_size = 8, .seq_len = 32, .stride = 32, .grad_accum = 1,
        .epochs = 100, .max_steps = 150, .seed = 1, .val_split = 0.05, .adamw = hm_adamw_defaults(),
        .log_every = 50, .eval_every = 0, .eval_batches = 1, .save_every = 0,
        .lr = {HM_LR_COSINE, 3e-3, 3e-4, 10, 0, 0},
    };
    struct hm_train_summary sum;
    CHECK(hm_train(model, &data, NULL, &opt, NULL, NULL, NULL, &sum));
    printf("trained %ld steps: loss %.3f\n", sum.steps, sum.final_loss);

    /* 5. Generation: greedy, KV cache, streamed text. */
    uint32_t ids[16];
    size_t n;
    CHECK(hm_tokenizer_encode(tok, "the quick", 9, ids, 16, &n));
    int32_t prompt[16];
    for (size_t i = 0; i < n; i++)
        prompt[i] = (int32_t)ids[i];
    struct hm_sampler_opts sopt = {.temperature = 0.0f, .top_p = 1.0f, .repetition_penalty = 1.0f};
    struct hm_sampler *sampler;
    struct hm_decode_stream *ds;
    CHECK(hm_sampler_new(cfg.vocab_size, &sopt, &sampler));
    CHECK(hm_decode_stream_new(tok, true, &ds));
    struct hm_generate_opts gopt = {.max_new_tokens = 12, .eos_id = -1};
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
