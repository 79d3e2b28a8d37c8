/* commands.h - the subcommands of hermes-llm; each lives in its own cmd-*.c file. */
#ifndef HERMES_CLI_COMMANDS_H
#define HERMES_CLI_COMMANDS_H

#include "hermes/hermes.h"

/* Each returns HM_OK, or a status with hm_last_error() set. argv[0] is the command name. */
enum hm_status cmd_train_tokenizer(int argc, char **argv);
enum hm_status cmd_train(int argc, char **argv);
enum hm_status cmd_generate(int argc, char **argv);
enum hm_status cmd_chat(int argc, char **argv);
enum hm_status cmd_info(int argc, char **argv);
enum hm_status cmd_export(int argc, char **argv);
enum hm_status cmd_import(int argc, char **argv);
enum hm_status cmd_serve(int argc, char **argv);

#endif
