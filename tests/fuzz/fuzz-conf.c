/* fuzz-conf: any bytes as a config file; must return a config or a located error, never crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *error = NULL;
	struct mr_config *cfg = conf_load_buffer("fuzz.yaml", (const char *)data, size, &error);
	if (cfg == NULL) {
		if (error == NULL || strncmp(error, "fuzz.yaml:", 10) != 0)
			abort();
		free(error);
		return 0;
	}
	if (error != NULL)
		abort();
	conf_free(&cfg);
	return 0;
}
