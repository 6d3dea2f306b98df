#!/usr/bin/env bash
# Builds pydock's exec helper (core/runtime/exec_helper/exec_helper.c) for each machine
# pydock runs on, into core/runtime/exec_helper/<machine>. The binaries are committed:
# installing pydock needs no compiler. tests/test_exec_helper.py rebuilds with this script
# and fails if a committed binary no longer matches its source.
#   scripts/build-exec-helper.sh [OUT_DIR]   (default: the package's own folder)
# Needs gcc (x86_64) and gcc-aarch64-linux-gnu; Debian 12's, as CI has, for identical bytes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source_file=core/runtime/exec_helper/exec_helper.c
out=${1:-core/runtime/exec_helper}
# Static, no libc, no start files; no build id or unwind tables, so that the same source
# and compiler give the same bytes. -Os and --nmagic keep it to about a kilobyte.
flags=(-static -nostdlib -nostartfiles -Os -fno-stack-protector -fno-asynchronous-unwind-tables
       -fno-unwind-tables -fno-pie -no-pie -Wall -Werror -s -Wl,--build-id=none -Wl,--nmagic
       -Wl,-z,noexecstack)
for machine in x86_64 aarch64; do
    case $machine in
        x86_64) cc=x86_64-linux-gnu-gcc ;;
        aarch64) cc=aarch64-linux-gnu-gcc ;;
    esac
    "$cc" "${flags[@]}" -o "$out/$machine" "$source_file"
done
