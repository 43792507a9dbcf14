/* Declarations of every subcommand listed in commands.def. */
#ifndef MR_CLI_COMMANDS_H
#define MR_CLI_COMMANDS_H

#include "cli/cli.h"

#define MR_COMMAND(name, fn, usage) cli_main_fn fn;
#include "cli/commands.def"
#undef MR_COMMAND

#endif
