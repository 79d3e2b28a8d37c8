/* corpus.c - feed every sequence of every corpus file to the BPE trainer (corpus.h). */
#include "hermes/corpus.h"
#include "data/reader.h"
#include "util/util.h"

static enum hm_status feed(void *user, const char *text, size_t len)
{
    return hm_tokenizer_trainer_feed(user, text, len);
}

enum hm_status hm_corpus_train_tokenizer(const char *const *paths, int n_paths, const char *text_field,
                                         const struct hm_tokenizer_train_opts *opts,
                                         struct hm_tokenizer **out)
{
    struct hm_tokenizer_trainer *tr;
    enum hm_status st = hm_tokenizer_trainer_new(opts, &tr);
    if (st != HM_OK)
        return st;
    struct hm_reader_opts ro = {HM_READER_AUTO, text_field};
    for (int i = 0; i < n_paths && st == HM_OK; i++)
        st = hm_reader_foreach(paths[i], &ro, feed, tr);
    if (st == HM_OK)
        st = hm_tokenizer_trainer_finish(tr, out);
    hm_tokenizer_trainer_free(tr);
    return st;
}
