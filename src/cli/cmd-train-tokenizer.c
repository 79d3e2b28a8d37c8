/* cmd-train-tokenizer.c - `hermes-llm train-tokenizer` (placeholder until its issue lands). */
#include "commands.h"
#include "opts.h"

enum hm_status cmd_train_tokenizer(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return hm_fail(HM_ERR_UNSUPPORTED, "train-tokenizer: not implemented yet");
}
