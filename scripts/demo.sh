#!/usr/bin/env bash
# Sets pydock up, then shows what it is for: two containers from one image on two
# storage drivers, each with its own writable root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

export PYDOCK_ROOT="${PYDOCK_ROOT:-/var/lib/pydock}"
pydock=.venv/bin/pydock
bold='' plain=''
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; fi
step() { printf '\n%s$ pydock %s%s\n' "$bold" "$*" "$plain"; "$pydock" "$@"; }

"$pydock" rm -f hello1 hello2 >/dev/null 2>&1 || true

step storage ls
step run --storage overlay -name hello1 /bin/sh -c 'mkdir /test; echo "I am $(hostname), pid $$; / holds:" $(ls /)'
step run --storage copy -name hello2 /bin/sh -c 'echo "I am $(hostname), pid $$; / holds:" $(ls /)'
echo "(hello2 has no /test: hello1 wrote into its own overlay upper directory, not the image)"
step ps -a
step rm hello1 hello2
echo
echo "mounts left on the host by the demo: $(grep -c "$PYDOCK_ROOT" /proc/self/mountinfo || true)"
