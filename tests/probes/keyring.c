/* Prints the serial of the calling process's session keyring, or fails.
 * keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, create=0). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    long id = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* SESSION */, 0);
    if (id < 0) {
        fprintf(stderr, "keyctl: %s\n", strerror(errno));
        return 1;
    }
    printf("%ld\n", id);
    return 0;
}
