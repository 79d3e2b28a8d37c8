/*
 * special-tokens.c - the special tokens other tools need named: bos/eos/pad ids and the ChatML
 * pair, found by their spelling as `train` and `generate` find <eos>.
 */
#include "export-impl.h"

const char *const hm_eos_names[] = {"<eos>", "<|endoftext|>", NULL};
const char *const hm_bos_names[] = {"<bos>", "<|endoftext|>", NULL};
const char *const hm_pad_names[] = {"<pad>", NULL};

const char hm_chatml_template[] =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant"
    "\\n' }}{% endif %}";

int64_t hm_tokenizer_find(const struct hm_tokenizer *tok, const char *const *names)
{
    for (; *names; names++) {
        int64_t id = hm_tokenizer_token_to_id(tok, *names);
        if (id >= 0)
            return id;
    }
    return -1;
}

bool hm_tokenizer_has_chatml(const struct hm_tokenizer *tok)
{
    return hm_tokenizer_token_to_id(tok, "<|im_start|>") >= 0 &&
           hm_tokenizer_token_to_id(tok, "<|im_end|>") >= 0;
}
