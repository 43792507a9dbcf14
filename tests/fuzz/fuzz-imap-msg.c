/* Fuzz the MIME structure parser behind FETCH ENVELOPE/BODYSTRUCTURE/BODY[section]. */
#include <stddef.h>
#include <stdint.h>

#include "imap/imap_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_msg m;
	imap_msg_parse(&m, (const char *)data, size);
	struct buf out;
	buf_init(&out, 16 * 1024 * 1024);
	imap_msg_envelope(&m.root, &out);
	imap_msg_bodystructure(&m.root, &out, true);
	static const char *const secs[] = { "", "1", "1.2", "2.MIME", "HEADER", "TEXT", "1.HEADER.FIELDS (A B)" };
	for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
		buf_reset(&out);
		imap_msg_section(&m, secs[i], &out);
		buf_reset(&out);
		imap_msg_binary(&m, secs[i], &out);
	}
	(void)imap_msg_body_search(&m, "m\xc3\xbcnchen");
	(void)imap_msg_text_search(m.root.hdr, m.root.hdr_len, "caf\xc3\xa9");
	buf_deinit(&out);
	imap_msg_free(&m);
	return 0;
}
