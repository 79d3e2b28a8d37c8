/*
 * params.c - the tensors a config has, in the model's own declaration order, taken from a
 * declare-only model (no memory) so the exporters never keep a second list of names and shapes.
 */
#include "export-impl.h"

enum hm_status hm_param_list_new(const struct hm_model_config *cfg, struct hm_param_list *out)
{
    out->decl = NULL;
    enum hm_status st = hm_model_new(cfg, NULL, &out->decl);
    if (st != HM_OK)
        return st;
    out->n = hm_block_n_tensors(hm_model_params(out->decl));
    return HM_OK;
}

const struct hm_tensor *hm_param_at(const struct hm_param_list *l, int i)
{
    return hm_block_tensor(hm_model_params(l->decl), i);
}

void hm_param_list_free(struct hm_param_list *l)
{
    hm_model_free(l->decl);
    l->decl = NULL;
}
