/* fuzz-api-request - `serve`'s request parser (src/serve/request.c), the very function the server
 * calls on every body: any bytes either give a 400 with a one-line message and nothing held, or a
 * request whose every field is in range and whose strings are what the parser copied. */
#include "serve/serve.h"

#include <stdlib.h>
#include <string.h>

static void check(const struct hm_api_request *r)
{
    if (r->kind == HM_API_CHAT ? r->conv.n < 1 : (!r->prompt || r->prompt_len == 0))
        abort();
    if (r->max_tokens < 0 || r->n_stop < 0 || r->n_stop > HM_API_MAX_STOP || r->sampling.top_k < 0)
        abort();
    if (!(r->sampling.temperature >= 0 && r->sampling.temperature <= 2) ||
        !(r->sampling.top_p > 0 && r->sampling.top_p <= 1) || !(r->sampling.repetition_penalty > 0))
        abort();
    for (int i = 0; i < r->n_stop; i++)
        if (r->stop_len[i] == 0 || r->stop_len[i] > HM_API_MAX_STOP_LEN ||
            strlen(r->stop[i]) > r->stop_len[i])
            abort();
    if (memchr(r->model, 0, sizeof r->model) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the first byte picks the endpoint, the rest is the body */
    if (size < 1)
        return 0;
    enum hm_api_kind kind = data[0] & 1 ? HM_API_COMPLETION : HM_API_CHAT;
    struct hm_api_request r;
    struct hm_api_error e;
    if (hm_api_parse_request(kind, (const char *)data + 1, size - 1, &r, &e)) {
        check(&r);
        hm_api_request_free(&r);
    } else if (e.status != 400 && e.status != 500) {
        abort();
    } else if (!memchr(e.message, 0, sizeof e.message) || strchr(e.message, '\n')) {
        abort(); /* one line */
    }
    return 0;
}
