#!/usr/bin/env bash
# Runs its arguments as root of a new user namespace that maps uids and gids 0-65535 to the
# same ids outside, with a mount namespace of its own. Must be started as root.
set -euo pipefail
go=$(mktemp -u) && mkfifo "$go"
trap 'rm -f "$go"' EXIT
unshare --user --mount --propagation private -- sh -c 'read _ < "$0"; exec "$@"' "$go" "$@" &
pid=$!
# unshare has entered the namespaces once its user namespace differs from ours.
for _ in $(seq 200); do
    [ "$(readlink "/proc/$pid/ns/user")" != "$(readlink /proc/self/ns/user)" ] && break
    sleep 0.05
done
echo '0 0 65536' > "/proc/$pid/uid_map"
echo '0 0 65536' > "/proc/$pid/gid_map"
echo go > "$go"
wait "$pid"
