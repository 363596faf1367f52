/*
 * Passphrases: from the terminal with echo off, or one a line from
 * --passphrase-fd N.  Never from argv, the environment or a batch file.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cmd.h"

#define NO_TTY_PASS \
    "no terminal to ask for a passphrase; use --passphrase-fd N"

/* One line from fd, byte by byte: later lines stay for later officers. */
static int
read_line_fd(int fd, char *buf, size_t len, hsm_status *st)
{
	size_t n = 0;

	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return hsm_fail(st, "bad_value", "cannot read the "
			    "passphrase from descriptor %d: %s", fd,
			    strerror(errno));
		if (r == 0) {
			if (n == 0)
				return hsm_fail(st, "bad_value", "no more "
				    "passphrases on descriptor %d", fd);
			break;
		}
		if (c == '\n')
			break;
		if (n + 1 >= len) {
			OPENSSL_cleanse(buf, len);
			return hsm_fail(st, "bad_value", "passphrase on "
			    "descriptor %d is too long", fd);
		}
		buf[n++] = c;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return 0;
}

/* noterm: what to say when there is no terminal to ask on. */
static int
read_tty(const char *prompt, bool echo, const char *noterm, char *buf,
    size_t len, hsm_status *st)
{
	struct termios old, noecho;
	int fd, r;

	if ((fd = open("/dev/tty", O_RDWR | O_CLOEXEC)) < 0)
		return hsm_fail(st, "usage", "%s", noterm);
	if (tcgetattr(fd, &old) != 0) {
		close(fd);
		return hsm_fail(st, "usage", "cannot control the terminal; "
		    "use --passphrase-fd N");
	}
	noecho = old;
	if (!echo)
		noecho.c_lflag &= (tcflag_t)~(ECHO | ECHONL);
	if (write(fd, prompt, strlen(prompt)) < 0 ||
	    tcsetattr(fd, TCSAFLUSH, &noecho) != 0) {
		close(fd);
		return hsm_fail(st, "usage", "cannot turn terminal echo off");
	}
	r = read_line_fd(fd, buf, len, st);
	tcsetattr(fd, TCSAFLUSH, &old);
	if (!echo && write(fd, "\n", 1) < 0) {
		/* The passphrase was read; a lost newline is harmless. */
	}
	close(fd);
	return r;
}

int
pass_read(struct ctx *ctx, const char *prompt, bool confirm, char *buf,
    size_t len, hsm_status *st)
{
	char again[HSM_PASS_MAX + 2];
	int r;

	if (ctx->passfd >= 0)
		return read_line_fd(ctx->passfd, buf, len, st);
	if ((r = read_tty(prompt, false, NO_TTY_PASS, buf, len, st)) != 0 ||
	    !confirm)
		return r;
	if ((r = read_tty("Same passphrase again: ", false, NO_TTY_PASS, again,
	    sizeof(again), st)) == 0 && strcmp(buf, again) != 0) {
		OPENSSL_cleanse(buf, len);
		r = hsm_fail(st, "bad_value", "the passphrases differ");
	}
	OPENSSL_cleanse(again, sizeof(again));
	return r;
}

bool
ask_yes(struct ctx *ctx, const char *question, hsm_status *st)
{
	char ans[16];
	int r;

	if (ctx->yes)
		return true;
	r = ctx->passfd >= 0 ? read_line_fd(ctx->passfd, ans, sizeof(ans),
	    st) : read_tty(question, true, "no terminal to confirm; use -y",
	    ans, sizeof(ans), st);
	if (r != 0)
		return false;
	if (strcmp(ans, "y") == 0 || strcmp(ans, "yes") == 0)
		return true;
	hsm_fail(st, "usage", "not confirmed");
	return false;
}
