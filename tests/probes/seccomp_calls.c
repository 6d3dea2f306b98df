/* Makes each system call named on the command line once and prints "NAME: ok" or
 * "NAME: <strerror>": what a container's seccomp filter (or the kernel) answers.
 *   userns   unshare(CLONE_NEWUSER)
 *   keyctl   keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
 *   mount    mount("none", "/tmp", "tmpfs", 0, "")
 *   clone3   clone3(NULL, 0): the kernel says EINVAL, docker's filter ENOSYS
 *   mkdir    mkdir("/probe-dir", 0755) */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static long call(const char *name) {
    if (!strcmp(name, "userns")) return unshare(CLONE_NEWUSER);
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 0, -3, 0);
    if (!strcmp(name, "mount")) return mount("none", "/tmp", "tmpfs", 0, "");
    if (!strcmp(name, "clone3")) return syscall(SYS_clone3, NULL, 0);
    if (!strcmp(name, "mkdir")) return mkdir("/probe-dir", 0755);
    errno = EINVAL;
    return -2;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long result = call(argv[i]);
        if (result == -2) {
            fprintf(stderr, "unknown call %s\n", argv[i]);
            return 2;
        }
        printf("%s: %s\n", argv[i], result < 0 ? strerror(errno) : "ok");
    }
    return 0;
}
