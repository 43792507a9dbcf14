/*
 * queue_cli: the logic of `mailroute queue ...` on a queue directory, apart
 * from config loading and privilege dropping (src/cli/cli_queue.c), so tests
 * can run it on a scratch directory.
 *
 *   queue list                 tab-separated, one header line, one line per message:
 *                              ID AGE SIZE SENDER RCPTS STATE NEXT LAST_ERROR PENDING
 *                              (PENDING: the first 10 pending recipients, comma-separated)
 *   queue show ID              envelope, recipients with their state, message headers
 *   queue delete ID            remove without bounce
 *   queue hold ID | release ID
 *   queue flush [ID]           next attempt = now (the running server picks it up
 *                              at its next scheduler scan)
 *   queue bounce ID            return to the sender: flags the message for the
 *                              running server, which sends the DSN
 *   queue stats
 *
 *   quarantine list            the messages in state quarantine (same columns)
 *   quarantine show ID | release ID | delete ID
 *                              only for quarantined messages; release = active
 *
 * argv[0] is "queue" or "quarantine". Output goes to out, errors as
 * "mailroute: ..." to err. Returns the exit code: 0 ok, 1 failure (unknown ID:
 * "mailroute: no message ID in the queue" / "... in quarantine"), 2 misuse.
 */
#ifndef MR_QUEUE_CLI_H
#define MR_QUEUE_CLI_H

#include <stdio.h>

/* 1 when argv is a valid queue command line, else prints the misuse to err and returns 0. */
int queue_cli_check(int argc, char **argv, FILE *err);
int queue_cli_run(const char *dir, int argc, char **argv, FILE *out, FILE *err);

/*
 * `mailq` (the Postfix-compatible entry point): Postfix's listing format, a
 * '!' after the ID for held/quarantined messages, the last error of pending
 * recipients in parentheses, "-- N Kbytes in M Requests." or "Mail queue is
 * empty". Returns the exit code.
 */
int queue_cli_mailq(const char *dir, FILE *out, FILE *err);

#endif
