/* cmd-generate.c - `hermes-llm generate` (placeholder until its issue lands). */
#include "commands.h"
#include "opts.h"

enum hm_status cmd_generate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return hm_fail(HM_ERR_UNSUPPORTED, "generate: not implemented yet");
}
