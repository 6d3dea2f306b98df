/* What an attacker does with device nodes, one step per call:
 *   devnode read PATH             open(O_RDONLY), print up to 64 bytes read
 *   devnode write PATH DATA       open(O_WRONLY), write DATA
 *   devnode mknod PATH b|c MAJ MIN
 *   devnode tmpfs DIR             mount a tmpfs (no nodev) on DIR: needs CAP_SYS_ADMIN
 *   devnode pause                 wait for a signal (a container that stays up)
 * A failure prints "STEP: strerror" on stderr and exits 1. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int fail(const char *step) {
    fprintf(stderr, "%s: %s\n", step, strerror(errno));
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "read") == 0) {
        char buf[64];
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0)
            return fail("open");
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0)
            return fail("read");
        fwrite(buf, 1, (size_t)n, stdout);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "write") == 0) {
        int fd = open(argv[2], O_WRONLY);
        if (fd < 0)
            return fail("open");
        if (write(fd, argv[3], strlen(argv[3])) < 0)
            return fail("write");
        return 0;
    }
    if (argc == 6 && strcmp(argv[1], "mknod") == 0) {
        mode_t type = argv[3][0] == 'b' ? S_IFBLK : S_IFCHR;
        if (mknod(argv[2], type | 0666, makedev(atoi(argv[4]), atoi(argv[5]))) < 0)
            return fail("mknod");
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "tmpfs") == 0) {
        if (mount("tmpfs", argv[2], "tmpfs", 0, NULL) < 0)
            return fail("mount");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "pause") == 0) {
        pause();
        return 0;
    }
    fprintf(stderr, "usage: devnode read|write|mknod|tmpfs|pause ...\n");
    return 2;
}
