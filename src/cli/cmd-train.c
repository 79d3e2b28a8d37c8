/* cmd-train.c - `hermes-llm train` (placeholder until its issue lands). */
#include "commands.h"
#include "opts.h"

enum hm_status cmd_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return hm_fail(HM_ERR_UNSUPPORTED, "train: not implemented yet");
}
