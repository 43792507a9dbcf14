#include "lib-smtp/smtp_command.h"

#include <string.h>

#include "lib-smtp/smtp_address.h"

struct verb_def {
	const char *name;
	enum smtp_verb verb;
};

static const struct verb_def verbs[] = {
	{ "EHLO", SMTP_VERB_EHLO }, { "HELO", SMTP_VERB_HELO }, { "MAIL", SMTP_VERB_MAIL },
	{ "RCPT", SMTP_VERB_RCPT }, { "DATA", SMTP_VERB_DATA }, { "BDAT", SMTP_VERB_BDAT },
	{ "RSET", SMTP_VERB_RSET }, { "NOOP", SMTP_VERB_NOOP }, { "QUIT", SMTP_VERB_QUIT },
	{ "VRFY", SMTP_VERB_VRFY }, { "EXPN", SMTP_VERB_EXPN }, { "HELP", SMTP_VERB_HELP },
	{ "STARTTLS", SMTP_VERB_STARTTLS }, { "AUTH", SMTP_VERB_AUTH },
};

static int e_param(struct smtp_parse_error *err, const char *text)
{
	return smtp_parse_fail(err, 501, "5.5.4", text);
}

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline bool is_alnum(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline int hexval(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int smtp_xtext_decode(const char *s, size_t len, char *dst, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			if (len - i < 3)
				return -1;
			int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
			if (h < 0 || l < 0)
				return -1;
			c = (unsigned char)(h * 16 + l);
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return -1;
		}
		if (o + 1 >= size)
			return -1;
		dst[o++] = (char)c;
	}
	if (size == 0)
		return -1;
	dst[o] = '\0';
	return (int)o;
}

/* 1-20 decimal digits fitting uint64. */
static bool parse_u64(struct smtp_view v, uint64_t *out)
{
	if (v.len == 0 || v.len > 20)
		return false;
	uint64_t n = 0;
	for (size_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.data[i];
		if (!is_digit(c))
			return false;
		unsigned d = c - '0';
		if (n > (UINT64_MAX - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*out = n;
	return true;
}

/* Split v at the first SP: head is before, rest after the run of SPs. */
static struct smtp_view next_token(struct smtp_view *v)
{
	struct smtp_view tok = { v->data, 0 };
	while (tok.len < v->len && v->data[tok.len] != ' ')
		tok.len++;
	size_t i = tok.len;
	while (i < v->len && v->data[i] == ' ')
		i++;
	v->data += i;
	v->len -= i;
	return tok;
}

static bool has_byte_ge(struct smtp_view v, unsigned char min)
{
	for (size_t i = 0; i < v.len; i++) {
		if ((unsigned char)v.data[i] >= min)
			return true;
	}
	return false;
}

/* ---- MAIL / RCPT parameters ---- */

enum param_id {
	P_SIZE = 1u << 0, P_BODY = 1u << 1, P_SMTPUTF8 = 1u << 2, P_RET = 1u << 3,
	P_ENVID = 1u << 4, P_AUTH = 1u << 5, P_NOTIFY = 1u << 6, P_ORCPT = 1u << 7,
};

static int parse_notify(struct smtp_view v, unsigned *out, struct smtp_parse_error *err)
{
	unsigned bits = 0;
	size_t i = 0;
	for (;;) {
		size_t start = i;
		while (i < v.len && v.data[i] != ',')
			i++;
		struct smtp_view item = { v.data + start, i - start };
		unsigned bit;
		if (smtp_view_eq_icase(item, "NEVER"))
			bit = SMTP_NOTIFY_NEVER;
		else if (smtp_view_eq_icase(item, "SUCCESS"))
			bit = SMTP_NOTIFY_SUCCESS;
		else if (smtp_view_eq_icase(item, "FAILURE"))
			bit = SMTP_NOTIFY_FAILURE;
		else if (smtp_view_eq_icase(item, "DELAY"))
			bit = SMTP_NOTIFY_DELAY;
		else
			return e_param(err, "Bad NOTIFY value");
		if ((bits & bit) != 0)
			return e_param(err, "Bad NOTIFY value (repeated)");
		bits |= bit;
		if (i == v.len)
			break;
		i++; /* ',' */
	}
	if ((bits & SMTP_NOTIFY_NEVER) != 0 && bits != SMTP_NOTIFY_NEVER)
		return e_param(err, "Bad NOTIFY value (NEVER is exclusive)");
	*out = bits;
	return 0;
}

static bool is_xtext(struct smtp_view v)
{
	for (size_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.data[i];
		if (c == '+') {
			if (v.len - i < 3 || hexval((unsigned char)v.data[i + 1]) < 0 ||
			    hexval((unsigned char)v.data[i + 2]) < 0)
				return false;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return false;
		}
	}
	return true;
}

static int parse_param(struct smtp_command *cmd, struct smtp_view kw, struct smtp_view val,
		       bool has_val, unsigned *seen, struct smtp_parse_error *err)
{
	bool mail = cmd->verb == SMTP_VERB_MAIL;
	unsigned id;
	if (mail && smtp_view_eq_icase(kw, "SIZE"))
		id = P_SIZE;
	else if (mail && smtp_view_eq_icase(kw, "BODY"))
		id = P_BODY;
	else if (mail && smtp_view_eq_icase(kw, "SMTPUTF8"))
		id = P_SMTPUTF8;
	else if (mail && smtp_view_eq_icase(kw, "RET"))
		id = P_RET;
	else if (mail && smtp_view_eq_icase(kw, "ENVID"))
		id = P_ENVID;
	else if (mail && smtp_view_eq_icase(kw, "AUTH"))
		id = P_AUTH;
	else if (!mail && smtp_view_eq_icase(kw, "NOTIFY"))
		id = P_NOTIFY;
	else if (!mail && smtp_view_eq_icase(kw, "ORCPT"))
		id = P_ORCPT;
	else
		return smtp_parse_fail(err, 555, "5.5.4", "Unsupported parameter");
	if ((*seen & id) != 0)
		return e_param(err, "Duplicate parameter");
	*seen |= id;
	if (id == P_SMTPUTF8) {
		if (has_val)
			return e_param(err, "SMTPUTF8 takes no value");
		cmd->mail.smtputf8 = true;
		return 0;
	}
	if (!has_val)
		return e_param(err, "Parameter value required");

	struct smtp_mail_params *m = &cmd->mail;
	struct smtp_rcpt_params *r = &cmd->rcpt;
	switch (id) {
	case P_SIZE:
		if (!parse_u64(val, &m->size))
			return e_param(err, "Bad SIZE value");
		m->has_size = true;
		return 0;
	case P_BODY:
		if (smtp_view_eq_icase(val, "7BIT"))
			m->body = SMTP_BODY_7BIT;
		else if (smtp_view_eq_icase(val, "8BITMIME"))
			m->body = SMTP_BODY_8BITMIME;
		else if (smtp_view_eq_icase(val, "BINARYMIME"))
			m->body = SMTP_BODY_BINARYMIME;
		else
			return e_param(err, "Bad BODY value");
		return 0;
	case P_RET:
		if (smtp_view_eq_icase(val, "FULL"))
			m->ret = SMTP_RET_FULL;
		else if (smtp_view_eq_icase(val, "HDRS"))
			m->ret = SMTP_RET_HDRS;
		else
			return e_param(err, "Bad RET value");
		return 0;
	case P_ENVID: {
		if (val.len > SMTP_ENVID_MAX)
			return e_param(err, "ENVID too long");
		int n = smtp_xtext_decode(val.data, val.len, m->envid, sizeof(m->envid));
		if (n < 0)
			return e_param(err, "Bad ENVID value");
		for (int i = 0; i < n; i++) {
			unsigned char c = (unsigned char)m->envid[i];
			if (c < 32 || c > 126)
				return e_param(err, "Bad ENVID value");
		}
		m->envid_len = (size_t)n;
		m->has_envid = true;
		return 0;
	}
	case P_AUTH:
		if (val.len > SMTP_ORCPT_MAX || !is_xtext(val))
			return e_param(err, "Bad AUTH value");
		m->auth = val;
		return 0;
	case P_NOTIFY:
		return parse_notify(val, &r->notify, err);
	case P_ORCPT: {
		const char *semi = memchr(val.data, ';', val.len);
		if (semi == NULL || semi == val.data)
			return e_param(err, "Bad ORCPT value");
		struct smtp_view type = { val.data, (size_t)(semi - val.data) };
		for (size_t i = 0; i < type.len; i++) {
			unsigned char c = (unsigned char)type.data[i];
			if (!is_alnum(c) && c != '-')
				return e_param(err, "Bad ORCPT address type");
		}
		const char *x = semi + 1;
		size_t xl = val.len - type.len - 1;
		int n = smtp_xtext_decode(x, xl, r->orcpt, sizeof(r->orcpt));
		if (xl == 0 || n <= 0)
			return e_param(err, "Bad ORCPT value");
		r->orcpt_type = type;
		r->orcpt_len = (size_t)n;
		r->has_orcpt = true;
		return 0;
	}
	}
	return e_param(err, "Syntax error in parameters");
}

static int parse_params(struct smtp_command *cmd, struct smtp_view rest, struct smtp_parse_error *err)
{
	unsigned seen = 0;
	while (rest.len > 0) {
		struct smtp_view tok = next_token(&rest);
		struct smtp_view kw = tok, val = { NULL, 0 };
		const char *eq = memchr(tok.data, '=', tok.len);
		bool has_val = eq != NULL;
		if (has_val) {
			kw.len = (size_t)(eq - tok.data);
			val.data = eq + 1;
			val.len = tok.len - kw.len - 1;
		}
		if (kw.len == 0 || !is_alnum((unsigned char)kw.data[0]))
			return e_param(err, "Syntax error in parameters");
		for (size_t i = 1; i < kw.len; i++) {
			unsigned char c = (unsigned char)kw.data[i];
			if (!is_alnum(c) && c != '-')
				return e_param(err, "Syntax error in parameters");
		}
		if (has_val) {
			if (val.len == 0)
				return e_param(err, "Syntax error in parameters");
			for (size_t i = 0; i < val.len; i++) {
				unsigned char c = (unsigned char)val.data[i];
				if (c < 33 || c > 126 || c == '=')
					return e_param(err, "Syntax error in parameters");
			}
		}
		if (parse_param(cmd, kw, val, has_val, &seen, err) < 0)
			return -1;
	}
	return 0;
}

/* Length of "<...>" at p (p[0] == '<'), honouring quoted strings; 0 if unterminated. */
static size_t path_len(const char *p, size_t n)
{
	bool quoted = false;
	for (size_t i = 1; i < n; i++) {
		char c = p[i];
		if (quoted) {
			if (c == '\\')
				i++;
			else if (c == '"')
				quoted = false;
		} else if (c == '"') {
			quoted = true;
		} else if (c == '>') {
			return i + 1;
		}
	}
	return 0;
}

static int parse_mail_rcpt(struct smtp_command *cmd, struct smtp_parse_error *err)
{
	const char *prefix = cmd->verb == SMTP_VERB_MAIL ? "FROM:" : "TO:";
	const char *usage = cmd->verb == SMTP_VERB_MAIL ? "Syntax: MAIL FROM:<address>"
							  : "Syntax: RCPT TO:<address>";
	size_t pl = strlen(prefix);
	struct smtp_view a = cmd->arg;
	if (a.len < pl || !smtp_view_eq_icase((struct smtp_view){ a.data, pl }, prefix))
		return smtp_parse_fail(err, 501, "5.5.2", usage);
	size_t i = pl;
	while (i < a.len && a.data[i] == ' ')
		i++;
	if (i == a.len || a.data[i] != '<')
		return smtp_parse_fail(err, 501, "5.5.4", usage);
	size_t n = path_len(a.data + i, a.len - i);
	if (n == 0)
		return smtp_parse_fail(err, 501, "5.1.3", "Bad address syntax");
	cmd->path.data = a.data + i;
	cmd->path.len = n;
	i += n;
	if (i < a.len && a.data[i] != ' ')
		return smtp_parse_fail(err, 501, "5.1.3", "Bad address syntax");
	struct smtp_view rest = { a.data + i, a.len - i };
	while (rest.len > 0 && rest.data[0] == ' ') {
		rest.data++;
		rest.len--;
	}
	if (has_byte_ge(rest, 0x80))
		return e_param(err, "Syntax error in parameters (8-bit)");
	return parse_params(cmd, rest, err);
}

static int parse_bdat(struct smtp_command *cmd, struct smtp_parse_error *err)
{
	struct smtp_view rest = cmd->arg;
	struct smtp_view size = next_token(&rest);
	if (!parse_u64(size, &cmd->bdat_size))
		return e_param(err, "Syntax: BDAT size [LAST]");
	if (rest.len == 0)
		return 0;
	struct smtp_view last = next_token(&rest);
	if (!smtp_view_eq_icase(last, "LAST") || rest.len != 0)
		return e_param(err, "Syntax: BDAT size [LAST]");
	cmd->bdat_last = true;
	return 0;
}

static int parse_auth(struct smtp_command *cmd, struct smtp_parse_error *err)
{
	struct smtp_view rest = cmd->arg;
	struct smtp_view mech = next_token(&rest);
	if (mech.len == 0 || mech.len > 20)
		return e_param(err, "Syntax: AUTH mechanism [initial-response]");
	for (size_t i = 0; i < mech.len; i++) {
		unsigned char c = (unsigned char)mech.data[i];
		if (!is_alnum(c) && c != '-' && c != '_')
			return e_param(err, "Syntax: AUTH mechanism [initial-response]");
	}
	cmd->auth_mech = mech;
	if (rest.len == 0)
		return 0;
	struct smtp_view ir = next_token(&rest);
	if (rest.len != 0)
		return e_param(err, "Syntax: AUTH mechanism [initial-response]");
	if (!(ir.len == 1 && ir.data[0] == '=')) {
		size_t pad = 0;
		for (size_t i = 0; i < ir.len; i++) {
			unsigned char c = (unsigned char)ir.data[i];
			if (c == '=') {
				pad++;
			} else if (pad > 0 || !(is_alnum(c) || c == '+' || c == '/')) {
				return e_param(err, "Bad initial response (base64 expected)");
			}
		}
		if (pad > 2)
			return e_param(err, "Bad initial response (base64 expected)");
	}
	cmd->auth_initial = ir;
	return 0;
}

int smtp_command_parse(const char *line, size_t len, struct smtp_command *cmd,
		       struct smtp_parse_error *err)
{
	/* ~700 bytes; cheap next to the syscall that brought the line. */
	memset(cmd, 0, sizeof(*cmd));

	if (memchr(line, '\0', len) != NULL)
		return smtp_parse_fail(err, 500, "5.5.2", "Syntax error (NUL character)");
	while (len > 0 && line[len - 1] == ' ')
		len--;

	size_t vl = 0;
	while (vl < len && line[vl] != ' ')
		vl++;
	struct smtp_view vname = { line, vl };
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (smtp_view_eq_icase(vname, verbs[i].name)) {
			cmd->verb = verbs[i].verb;
			cmd->verb_name = verbs[i].name;
			break;
		}
	}
	if (cmd->verb == SMTP_VERB_NONE)
		return smtp_parse_fail(err, 500, "5.5.1", "Command unrecognized");
	if (vl < len) {
		cmd->arg.data = line + vl + 1;
		cmd->arg.len = len - vl - 1;
	} else {
		cmd->arg.data = line + len;
		cmd->arg.len = 0;
	}
	for (size_t i = 0; i < cmd->arg.len; i++) {
		unsigned char c = (unsigned char)cmd->arg.data[i];
		if (c < 32 || c == 127)
			return smtp_parse_fail(err, 501, "5.5.2", "Syntax error (control character)");
	}
	bool eightbit_ok = cmd->verb == SMTP_VERB_MAIL || cmd->verb == SMTP_VERB_RCPT ||
			   cmd->verb == SMTP_VERB_VRFY || cmd->verb == SMTP_VERB_EXPN;
	if (!eightbit_ok && has_byte_ge(cmd->arg, 0x80))
		return smtp_parse_fail(err, 501, "5.5.2", "Syntax error (8-bit character)");

	switch (cmd->verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		if (cmd->arg.len == 0 || cmd->arg.data[0] == ' ')
			return e_param(err, cmd->verb == SMTP_VERB_EHLO ? "Syntax: EHLO hostname"
									 : "Syntax: HELO hostname");
		cmd->domain = cmd->arg;
		cmd->domain_valid = smtp_address_domain_valid(cmd->arg.data, cmd->arg.len, 0);
		return 0;
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		return parse_mail_rcpt(cmd, err);
	case SMTP_VERB_DATA:
	case SMTP_VERB_RSET:
	case SMTP_VERB_QUIT:
	case SMTP_VERB_STARTTLS:
		if (cmd->arg.len != 0)
			return e_param(err, "Syntax error (no parameters allowed)");
		return 0;
	case SMTP_VERB_NOOP:
	case SMTP_VERB_HELP:
		return 0;
	case SMTP_VERB_VRFY:
	case SMTP_VERB_EXPN:
		if (cmd->arg.len == 0)
			return e_param(err, "Syntax error (argument required)");
		return 0;
	case SMTP_VERB_BDAT:
		return parse_bdat(cmd, err);
	case SMTP_VERB_AUTH:
		return parse_auth(cmd, err);
	case SMTP_VERB_NONE:
		break;
	}
	return smtp_parse_fail(err, 500, "5.5.1", "Command unrecognized");
}
