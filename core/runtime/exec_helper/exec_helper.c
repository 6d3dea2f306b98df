/*
 * pydock's exec helper: the last program a container's process runs before its command.
 *
 * Why it exists (CVE-2019-5736): whatever the kernel finds at /proc/self/exe while a
 * process execs is that process's own binary. Were pydock's process to exec the command
 * itself, a command that resolves to "#!/proc/self/exe" (an image's ENTRYPOINT, a script
 * an admin execs) would run pydock's host Python binary inside the container, which could
 * keep a descriptor to it and rewrite it once no pydock process runs it any more. So
 * pydock execs this helper instead, from a sealed memfd of its own (see exec_helper.py),
 * and the helper execs the command: at that exec /proc/self/exe is the sealed copy, which
 * nothing can write and which belongs to no one else.
 *
 * Contract: argv = { "pydock-exec-helper", PATH, ARG0, ARG1, ..., NULL }; fd 3 is the
 * write end of pydock's error pipe. The helper marks fd 3 close-on-exec and execs PATH with
 * argv ARG0... and its own environment. If that fails it writes "errno N" to fd 3 and exits
 * 126 (127 for ENOENT), as a shell does. Run any other way (as the interpreter of a
 * "#!/proc/self/exe" script, say) it exits 126 and does nothing else.
 *
 * No libc: it must run in any container (no loader, no libc inside), and be small. Built by
 * scripts/build-exec-helper.sh; tests/test_exec_helper.py checks the committed binaries
 * match this source.
 */

#if defined(__x86_64__)
#define SYS_WRITE 1
#define SYS_FCNTL 72
#define SYS_EXECVE 59
#define SYS_EXIT_GROUP 231
#elif defined(__aarch64__)
#define SYS_WRITE 64
#define SYS_FCNTL 25
#define SYS_EXECVE 221
#define SYS_EXIT_GROUP 94
#else
#error "pydock's exec helper is built for x86_64 and aarch64"
#endif

#define ERROR_FD 3
#define F_SETFD 2
#define FD_CLOEXEC 1
#define ENOENT 2
#define EXIT_NOT_EXECUTABLE 126
#define EXIT_NOT_FOUND 127

static long syscall3(long number, long a, long b, long c) {
#if defined(__x86_64__)
    long result;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return result;
#else
    register long x8 __asm__("x8") = number;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
#endif
}

static void leave(long code) {
    for (;;) {
        syscall3(SYS_EXIT_GROUP, code, 0, 0);
    }
}

static int is_helper_name(const char *name) {
    const char *expected = "pydock-exec-helper";
    while (*name && *name == *expected) {
        name++;
        expected++;
    }
    return *name == *expected;
}

/* Called from _start with the initial stack: argc, argv[], NULL, envp[], NULL. */
__attribute__((used)) void helper_main(long *stack) {
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    char **envp = argv + argc + 1;
    if (argc < 3 || !is_helper_name(argv[0])) {
        leave(EXIT_NOT_EXECUTABLE);
    }
    syscall3(SYS_FCNTL, ERROR_FD, F_SETFD, FD_CLOEXEC);
    long error = -syscall3(SYS_EXECVE, (long)argv[1], (long)(argv + 2), (long)envp);

    char report[32] = "errno ";
    char digits[20];
    int count = 0;
    for (long rest = error; rest > 0 || count == 0; rest /= 10) {
        digits[count++] = (char)('0' + rest % 10);
    }
    int length = 6;
    while (count > 0) {
        report[length++] = digits[--count];
    }
    syscall3(SYS_WRITE, ERROR_FD, (long)report, length);
    leave(error == ENOENT ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE);
}

#if defined(__x86_64__)
__asm__(".globl _start\n"
        "_start:\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call helper_main\n"
        "    hlt\n");
#else
__asm__(".globl _start\n"
        "_start:\n"
        "    mov x0, sp\n"
        "    bl helper_main\n"
        "    brk #0\n");
#endif
