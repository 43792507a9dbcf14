/*
 * milter_proto: the Sendmail milter wire protocol (version 6), MTA side, as
 * pure functions: packet framing, command encoders, and the reply decoder.
 * The constants mirror libmilter's mfdef.h (the unit test checks them).
 *
 * A packet is a 4-byte big-endian length (covering the command byte and the
 * data), the command byte, then the data. Replies are decoded into views into
 * the packet data (valid until the caller's buffer changes); everything the
 * filter sends is validated (NUL-terminated strings where required, 3-digit
 * 4xx/5xx codes, sizes), a violation is an error, never a crash.
 */
#ifndef MR_MILTER_PROTO_H
#define MR_MILTER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

#define MILTER_VERSION 6
#define MILTER_CHUNK_MAX 65535      /* body chunk size */
#define MILTER_PACKET_MAX (1024 * 1024 + 64) /* largest reply we accept (MDS_1M + slack) */

/* commands (MTA -> filter) */
#define MILTER_CMD_ABORT 'A'
#define MILTER_CMD_BODY 'B'
#define MILTER_CMD_CONNECT 'C'
#define MILTER_CMD_MACRO 'D'
#define MILTER_CMD_BODYEOB 'E'
#define MILTER_CMD_HELO 'H'
#define MILTER_CMD_QUIT_NC 'K'
#define MILTER_CMD_HEADER 'L'
#define MILTER_CMD_MAIL 'M'
#define MILTER_CMD_EOH 'N'
#define MILTER_CMD_OPTNEG 'O'
#define MILTER_CMD_QUIT 'Q'
#define MILTER_CMD_RCPT 'R'
#define MILTER_CMD_DATA 'T'
#define MILTER_CMD_UNKNOWN 'U'

/* replies (filter -> MTA) */
#define MILTER_REPLY_ADDRCPT '+'
#define MILTER_REPLY_DELRCPT '-'
#define MILTER_REPLY_ADDRCPT_PAR '2'
#define MILTER_REPLY_SHUTDOWN '4'
#define MILTER_REPLY_ACCEPT 'a'
#define MILTER_REPLY_REPLBODY 'b'
#define MILTER_REPLY_CONTINUE 'c'
#define MILTER_REPLY_DISCARD 'd'
#define MILTER_REPLY_CHGFROM 'e'
#define MILTER_REPLY_CONN_FAIL 'f'
#define MILTER_REPLY_ADDHEADER 'h'
#define MILTER_REPLY_INSHEADER 'i'
#define MILTER_REPLY_SETSYMLIST 'l'
#define MILTER_REPLY_CHGHEADER 'm'
#define MILTER_REPLY_PROGRESS 'p'
#define MILTER_REPLY_QUARANTINE 'q'
#define MILTER_REPLY_REJECT 'r'
#define MILTER_REPLY_SKIP 's'
#define MILTER_REPLY_TEMPFAIL 't'
#define MILTER_REPLY_REPLYCODE 'y'
#define MILTER_REPLY_OPTNEG 'O'

/* actions (SMFIF_*) */
#define MILTER_ACT_ADDHDRS 0x001u
#define MILTER_ACT_CHGBODY 0x002u
#define MILTER_ACT_ADDRCPT 0x004u
#define MILTER_ACT_DELRCPT 0x008u
#define MILTER_ACT_CHGHDRS 0x010u
#define MILTER_ACT_QUARANTINE 0x020u
#define MILTER_ACT_CHGFROM 0x040u
#define MILTER_ACT_ADDRCPT_PAR 0x080u
#define MILTER_ACT_SETSYMLIST 0x100u
#define MILTER_ACT_ALL 0x1ffu

/* protocol flags (SMFIP_*) */
#define MILTER_P_NOCONNECT 0x00000001u
#define MILTER_P_NOHELO 0x00000002u
#define MILTER_P_NOMAIL 0x00000004u
#define MILTER_P_NORCPT 0x00000008u
#define MILTER_P_NOBODY 0x00000010u
#define MILTER_P_NOHDRS 0x00000020u
#define MILTER_P_NOEOH 0x00000040u
#define MILTER_P_NR_HDR 0x00000080u
#define MILTER_P_NOUNKNOWN 0x00000100u
#define MILTER_P_NODATA 0x00000200u
#define MILTER_P_SKIP 0x00000400u
#define MILTER_P_RCPT_REJ 0x00000800u
#define MILTER_P_NR_CONN 0x00001000u
#define MILTER_P_NR_HELO 0x00002000u
#define MILTER_P_NR_MAIL 0x00004000u
#define MILTER_P_NR_RCPT 0x00008000u
#define MILTER_P_NR_DATA 0x00010000u
#define MILTER_P_NR_UNKN 0x00020000u
#define MILTER_P_NR_EOH 0x00040000u
#define MILTER_P_NR_BODY 0x00080000u
#define MILTER_P_HDR_LEADSPC 0x00100000u
#define MILTER_P_MDS_256K 0x10000000u
#define MILTER_P_MDS_1M 0x20000000u
/* what this client offers: every skip and no-reply flag it honours, SKIP; not RCPT_REJ, LEADSPC */
#define MILTER_P_OFFERED 0x000ff7ffu

/* macro stages (SMFIM_*) for SETSYMLIST */
enum milter_macro_stage {
	MILTER_MACROS_CONNECT, MILTER_MACROS_HELO, MILTER_MACROS_MAIL, MILTER_MACROS_RCPT,
	MILTER_MACROS_DATA, MILTER_MACROS_EOM, MILTER_MACROS_EOH, MILTER_MACROS_COUNT
};

struct milter_packet {
	char cmd;
	const char *data;  /* view into the input */
	size_t len;
};

/*
 * Frame one packet from data. 1 with *pkt and *consumed set; 0 need more;
 * -1 (error_r) on a zero length or a length over max.
 */
int milter_packet_parse(const char *data, size_t len, size_t max, struct milter_packet *pkt, size_t *consumed,
                        const char **error_r);

/* A decoded filter reply. Strings are views into the packet, NUL-terminated there. */
struct milter_reply {
	char cmd;                 /* MILTER_REPLY_* */
	/* OPTNEG */
	uint32_t version, actions, protocol;
	const char *symlists;     /* OPTNEG: optional SMFIM lists (raw), symlists_len bytes */
	size_t symlists_len;
	/* REPLYCODE: code (400-599), enhanced ("4.7.1" or ""), text (rest, may be "") */
	int code;
	const char *text;         /* REPLYCODE whole reply line; QUARANTINE reason */
	/* header modifications */
	uint32_t index;           /* INSHEADER/CHGHEADER */
	const char *name, *value; /* headers; ADDRCPT(_PAR), DELRCPT, CHGFROM: name = address, value = args or NULL */
	/* REPLBODY */
	const char *body;
	size_t body_len;
};

/* Decode and validate a reply packet. 1 ok, -1 error (unknown command, malformed). */
int milter_reply_decode(const struct milter_packet *pkt, struct milter_reply *r, const char **error_r);

/*
 * Encoders append one packet to out (a buf with a maximum). -1 when out is full
 * (content unchanged) or an argument is unusable (e.g. contains a NUL).
 */
int milter_encode(struct buf *out, char cmd, const void *data, size_t len);
int milter_encode_optneg(struct buf *out, uint32_t version, uint32_t actions, uint32_t protocol);
/* names/values: n pairs; a NULL value skips the pair. */
int milter_encode_macros(struct buf *out, char for_cmd, const char *const *names, const char *const *values,
                         size_t n);
/* family: 'U' unknown, '4', '6'; port in host order; addr text */
int milter_encode_connect(struct buf *out, const char *hostname, char family, unsigned port, const char *addr);
/* MAIL/RCPT: address (sent in <>) and optional ESMTP args */
int milter_encode_envelope(struct buf *out, char cmd, const char *address, const char *const *args, size_t nargs);
int milter_encode_strings(struct buf *out, char cmd, const char *a, const char *b);

#endif
