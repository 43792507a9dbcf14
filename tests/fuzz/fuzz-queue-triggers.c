/*
 * fuzz-queue-triggers: arbitrary bytes as the message (network input) through
 * what the queue's named targets make of it: the webhook JSON document (must
 * always parse back as JSON), the auto-reply rules and the auto-reply message.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "queued/queue_triggers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *raw = (const char *)data;
	struct queue_trigger_envelope e = {
		.webhook = "crm", .queue_id = "Q1", .idx = 0, .sender = "s@client.test",
		.recipient = "info@example.test", .original_recipient = NULL, .arrival = 0,
	};
	char *doc = queue_triggers_webhook_json(&e, raw, size);
	json_error_t je;
	json_t *j = json_loads(doc, JSON_REJECT_DUPLICATES, &je);
	if (j == NULL)
		abort(); /* the document must always be valid JSON */
	json_decref(j);
	free(doc);
	const char *why = NULL;
	(void)queue_triggers_autoreply_allowed("s@client.test", "info@example.test", raw, size, &why);
	struct conf_autoreply ar = { .name = "a", .from = "info@example.test", .text = "Hi ${sender}\n" };
	free(queue_triggers_autoreply_build(&ar, "s@client.test", "mx.example.test", raw, size, 0));
	return 0;
}
