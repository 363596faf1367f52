#!/usr/bin/env python3
r"""Drive an interactive program in a pseudo-terminal with a small script.

    pty_shell.py [-t SECONDS] [-l LOG] [-s SYNCDIR] [-e NAME=VALUE]...
                 SCRIPT -- PROGRAM [ARGS...]

PROGRAM runs as the session leader of a new pseudo-terminal (200x50,
TERM=dumb unless -e sets it), so its stdin, stdout and stderr are all that
terminal and a Ctrl-C written to it is delivered as SIGINT.  The SCRIPT is
one step a line; blank lines and lines starting with '#' are skipped.
TEXT is taken literally after one space, with backslash escapes decoded
(\r \t \n \x03 \\ ...):

    send TEXT     write TEXT to the terminal, once its echo is off (the
                  program is reading a line, as with a line editor)
    sendnow TEXT  write TEXT at once, even while the terminal echoes (to
                  type ahead, or a Ctrl-C while a command runs)
    cmd TEXT      write TEXT and a carriage return, then consume the
                  program's echo of TEXT up to the end of that line
    expect RE     wait (the step timeout) until the Python regex RE matches
                  (re.search) the output not consumed yet, and consume it up
                  to the end of the match (re itself knows \r \n \x03)
    save FILE     write the output consumed by the last expect, before its
                  match (and after the previous one), to FILE with the
                  carriage returns removed
    pause NAME    create SYNCDIR/NAME and wait (at most 60 s) for
                  SYNCDIR/NAME.go: the caller does something meanwhile
    timeout SECS  the timeout of the following steps (default -t, 10 s)
    sleep SECS    just wait, reading output
    exit STATUS   wait for the program to exit with that status ("0") or
                  be killed by that signal ("SIGKILL")

The script must end with an exit step.  Everything the program wrote is
copied to LOG (default: nowhere).  The exit status is 0 when every step
succeeded, 1 otherwise (the failing step and the output not consumed yet
are printed on stderr), 2 on a usage error.
"""
import codecs
import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time


def usage(msg):
    sys.stderr.write("pty_shell: %s\n" % msg)
    sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
    sys.exit(2)


def decode(text):
    # Backslash escapes only; the rest is kept byte for byte (latin-1).
    return codecs.decode(text.encode("latin-1", "backslashreplace"),
                         "unicode_escape")


class Failure(Exception):
    pass


class Session:
    def __init__(self, argv, env, log):
        self.buf = ""           # everything read, latin-1 (one char a byte)
        self.pos = 0            # consumed up to here
        self.saved = ""         # what the last expect consumed before its match
        self.status = None
        self.log = log
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execvpe(argv[0], argv, env)
            except OSError as e:
                os.write(2, ("pty_shell: cannot run %s: %s\n" %
                             (argv[0], e)).encode())
            os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))

    def read(self, wait):
        """Read what is there within wait seconds; False at end of output."""
        if self.fd is None:
            return False
        r, _, _ = select.select([self.fd], [], [], max(wait, 0))
        if not r:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:         # EIO: the slave side is closed
            data = b""
        if not data:
            os.close(self.fd)
            self.fd = None
            return False
        if self.log is not None:
            self.log.write(data)
            self.log.flush()
        self.buf += data.decode("latin-1")
        return True

    def reap(self):
        if self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = st
        return self.status

    def send(self, text, timeout, wait=True):
        # Like a person, type only while the program is reading a line: a
        # line editor turns the terminal's echo off then.  (libedit writes
        # its prompt before it does, so input sent on seeing the prompt
        # could still be echoed by the terminal, and then again by libedit.)
        end = time.monotonic() + timeout
        while True:
            if self.reap() is not None or self.fd is None:
                raise Failure("the program has exited (%s)" %
                              describe(self.reap()))
            if not wait or not termios.tcgetattr(self.fd)[3] & termios.ECHO:
                break
            if time.monotonic() > end:
                raise Failure("the terminal still echoes after %g s (the "
                              "program is not reading a line)" % timeout)
            self.read(0.01)
        os.write(self.fd, text.encode("latin-1"))

    def expect(self, regex, timeout):
        rx = re.compile(regex)
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf, self.pos)
            if m:
                self.saved = self.buf[self.pos:m.start()]
                self.pos = m.end()
                return
            left = end - time.monotonic()
            if left <= 0:
                raise Failure("timed out after %g s" % timeout)
            if not self.read(min(left, 0.2)):
                if self.reap() is not None or self.fd is None:
                    m = rx.search(self.buf, self.pos)
                    if m:
                        continue
                    raise Failure("the program's output ended (%s)" %
                                  describe(self.reap()))

    def wait_exit(self, timeout):
        end = time.monotonic() + timeout
        while self.reap() is None:
            if time.monotonic() >= end:
                raise Failure("still running after %g s" % timeout)
            if not self.read(0.05):
                time.sleep(0.02)
        while self.read(0.05):  # the rest of the output
            pass
        return self.status

    def kill(self):
        if self.reap() is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -1


def describe(st):
    if st is None:
        return "still running"
    if os.WIFEXITED(st):
        return "exit status %d" % os.WEXITSTATUS(st)
    if os.WIFSIGNALED(st):
        return "killed by %s" % signal.Signals(os.WTERMSIG(st)).name
    return "status %r" % st


def main():
    args = sys.argv[1:]
    timeout, logpath, syncdir, env = 10.0, None, None, dict(os.environ)
    env["TERM"] = "dumb"
    while args and args[0] != "--" and args[0].startswith("-"):
        opt = args.pop(0)
        if not args:
            usage("%s needs a value" % opt)
        val = args.pop(0)
        if opt == "-t":
            timeout = float(val)
        elif opt == "-l":
            logpath = val
        elif opt == "-s":
            syncdir = val
        elif opt == "-e":
            name, eq, value = val.partition("=")
            if not eq:
                usage("-e takes NAME=VALUE")
            env[name] = value
        else:
            usage("unknown option %s" % opt)
    if len(args) < 3 or args[1] != "--":
        usage("give SCRIPT -- PROGRAM [ARGS...]")
    script, argv = args[0], args[2:]
    steps = []
    with open(script, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            verb, _, arg = line.partition(" ")
            if verb not in ("send", "sendnow", "cmd", "expect", "save", "pause",
                            "timeout", "sleep", "exit"):
                usage("%s:%d: unknown step %r" % (script, n, verb))
            steps.append((n, line, verb, arg))
    if not steps or steps[-1][2] != "exit":
        usage("%s: the script must end with an exit step" % script)

    log = open(logpath, "ab") if logpath else None
    s = Session(argv, env, log)
    try:
        for n, line, verb, arg in steps:
            try:
                if verb == "send":
                    s.send(decode(arg), timeout)
                elif verb == "sendnow":
                    s.send(decode(arg), 0, wait=False)
                elif verb == "cmd":
                    text = decode(arg)
                    s.send(text + "\r", timeout)
                    s.expect(re.escape(text) + r"[^\n]*\n", timeout)
                elif verb == "expect":
                    s.expect(arg, timeout)
                elif verb == "save":
                    with open(arg, "w", encoding="latin-1") as out:
                        out.write(s.saved.replace("\r", ""))
                elif verb == "pause":
                    if syncdir is None:
                        raise Failure("pause without -s SYNCDIR")
                    open(os.path.join(syncdir, arg), "w").close()
                    go = os.path.join(syncdir, arg + ".go")
                    end = time.monotonic() + 60
                    while not os.path.exists(go):
                        if time.monotonic() > end:
                            raise Failure("no %s within 60 s" % go)
                        s.read(0.05)
                elif verb == "timeout":
                    timeout = float(arg)
                elif verb == "sleep":
                    end = time.monotonic() + float(arg)
                    while time.monotonic() < end:
                        s.read(end - time.monotonic())
                elif verb == "exit":
                    st = s.wait_exit(timeout)
                    if arg.startswith("SIG"):
                        ok = (os.WIFSIGNALED(st) and
                              signal.Signals(os.WTERMSIG(st)).name == arg)
                    else:
                        ok = os.WIFEXITED(st) and os.WEXITSTATUS(st) == int(arg)
                    if not ok:
                        raise Failure("%s, want %s" % (describe(st), arg))
            except Failure as e:
                tail = s.buf[s.pos:]
                sys.stderr.write(
                    "pty_shell: %s:%d: `%s`: %s\n"
                    "pty_shell: output not consumed yet (%d bytes): %r\n"
                    "pty_shell: consumed before it ends with: %r\n" %
                    (script, n, line, e, len(tail), tail[-1500:],
                     s.buf[max(0, s.pos - 300):s.pos]))
                return 1
        return 0
    finally:
        s.kill()
        if log is not None:
            log.close()


if __name__ == "__main__":
    sys.exit(main())
