#!/bin/sh
# The checks .ci/vm-test runs inside the emulated arm64 Debian, one subcommand per step, each
# failing with a line saying what is wrong. The host's driver (run.py) calls them in order.
set -eu

unit=iop-profile-server
etc=/etc/iop-profile-server
dropin=/etc/systemd/system/$unit.service.d
boards=/usr/share/iop-profile-server/board
state=/var/lib/private/iop-profile-server
cgroup=/sys/fs/cgroup/system.slice/$unit.service

fail() { echo "FAIL: $*"; exit 1; }
show() { systemctl show -p "$1" --value "$unit"; }

# The profile's config with the listener ports the host forwards, and its systemd drop-in.
use_board() {
    board=$1 primary=$2 tls=$3
    sed -e "s/^port = 16987\$/port = $primary/" -e "s/^port = 16988\$/port = $tls/" \
        "$boards/$board/config.toml" > "$etc/config.toml"
    grep -q "^port = $primary\$" "$etc/config.toml" || fail "no primary port in $board config"
    mkdir -p "$dropin"
    cp "$boards/$board/override.conf" "$dropin/board.conf"
    systemctl daemon-reload
}

# Prints the network id the running server reports.
network_id() {
    iop-profile-server status | sed -n 's/^network id *\([0-9a-f]\{64\}\)$/\1/p'

}

# Waits up to $1 seconds for the service to be active with a main process other than $2.
wait_active() {
    seconds=$1 old_pid=${2:-0}
    i=0
    while [ "$i" -lt "$((seconds * 2))" ]; do
        if [ "$(show ActiveState)" = active ] && [ "$(show MainPID)" != 0 ] \
            && [ "$(show MainPID)" != "$old_pid" ]; then
            return 0
        fi
        sleep 0.5
        i=$((i + 1))
    done
    fail "not active after ${seconds} s: $(show ActiveState)/$(show SubState), $(show Result)"
}

case "$1" in
install)
    # install DEB PRIMARY TLS: the package, the Pi 3 profile, enable --now.
    dpkg -i "$2"
    use_board pi3 "$3" "$4"
    systemctl enable --now "$unit"
    wait_active 60
    echo "$(dpkg-query -W -f '${Version}' "$unit") installed and active"
    ;;
service)
    # The running service as systemd and the kernel see it.
    [ "$(show ActiveState)" = active ] || fail "ActiveState $(show ActiveState)"
    status_text=$(show StatusText)
    case "$status_text" in
    "serving as "*) ;;
    *) fail "StatusText is '$status_text', not the headline" ;;
    esac
    watchdog=$(show WatchdogUSec)
    [ -n "$watchdog" ] && [ "$watchdog" != 0 ] && [ "$watchdog" != infinity ] \
        || fail "WatchdogUSec is '$watchdog'"
    pid=$(show MainPID)
    uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
    # systemd's range for dynamic users.
    [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] || fail "main process runs as uid $uid"
    profile=$(sed -n 's/^MemoryMax=//p' "$dropin/board.conf")
    expected=$(numfmt --from=iec "$profile")
    actual=$(cat "$cgroup/memory.max")
    [ "$actual" = "$expected" ] || fail "memory.max $actual, the profile says $profile"
    echo "active; '$status_text'; watchdog $watchdog; uid $uid; memory.max $actual"
    ;;
status)
    # `status` through the runtime socket, for root and for a member of the status group.
    iop-profile-server status >/dev/null
    id alice >/dev/null 2>&1 || useradd --create-home alice
    id mallory >/dev/null 2>&1 || useradd --create-home mallory
    usermod -a -G iop-profile-server-status alice
    su alice -s /bin/sh -c 'iop-profile-server status' >/tmp/alice.out 2>&1 \
        || fail "status as a member of iop-profile-server-status: $(cat /tmp/alice.out)"
    if su mallory -s /bin/sh -c 'iop-profile-server status' >/tmp/mallory.out 2>&1; then
        fail "status works for a user outside iop-profile-server-status"
    fi
    echo "root and alice (in the group) read it; mallory: $(head -n 1 /tmp/mallory.out)"
    ;;
sandbox)
    # Inside the service's mount namespace only the state directory is writable.
    pid=$(show MainPID)
    for path in /usr/lib/iop-sandbox-test /etc/iop-sandbox-test /var/tmp/../lib/iop-sandbox-test \
        /root/iop-sandbox-test; do
        if nsenter -t "$pid" -m sh -c "echo x > $path" 2>/dev/null; then
            fail "the service could write $path"
        fi
    done
    nsenter -t "$pid" -m sh -c 'echo x > /var/lib/iop-profile-server/sandbox-test' \
        || fail "the state directory is not writable in the service's namespace"
    rm -f "$state/sandbox-test"
    echo "writes outside /var/lib/iop-profile-server fail"
    ;;
restarts)
    # restarts N: NRestarts is N (after a watchdog period: the watchdog was fed).
    [ "$(show NRestarts)" = "$2" ] || fail "NRestarts $(show NRestarts), expected $2"
    echo "NRestarts $2 after $(($(date +%s) - $(date -d "$(show ExecMainStartTimestamp)" +%s))) s of this process"
    ;;
network-id)
    network_id
    ;;
kill9)
    # kill9 NETWORK_ID: systemd restarts a killed server, which keeps its identity.
    pid=$(show MainPID)
    kill -9 "$pid"
    wait_active 60 "$pid"
    [ "$(network_id)" = "$2" ] || fail "network id $(network_id) after the restart, was $2"
    echo "restarted as pid $(show MainPID), same network id"
    ;;
upgrade)
    # upgrade DEB NETWORK_ID: a newer package keeps config and data and restarts the service.
    before_config=$(sha256sum "$etc/config.toml")
    before_version=$(dpkg-query -W -f '${Version}' "$unit")
    pid=$(show MainPID)
    dpkg -i --force-confold "$2"
    after_version=$(dpkg-query -W -f '${Version}' "$unit")
    [ "$after_version" != "$before_version" ] || fail "version still $before_version"
    [ "$(sha256sum "$etc/config.toml")" = "$before_config" ] || fail "config.toml changed"
    wait_active 60 "$pid"
    [ "$(network_id)" = "$3" ] || fail "network id $(network_id) after the upgrade, was $3"
    echo "$before_version -> $after_version, config kept, restarted, same network id"
    ;;
flood-board)
    # flood-board NAME PRIMARY TLS: switch to another profile for the flood and restart. The
    # flood comes from one address (the user-mode network's gateway), so the per-address
    # connection limit is raised to the profile's max_connections: the flood then reaches the
    # limits of the whole server, which the profile sizes to fit its MemoryMax.
    pid=$(show MainPID)
    use_board "$2" "$3" "$4"
    total=$(sed -n 's/^max_connections = \([0-9]*\)$/\1/p' "$etc/config.toml")
    [ -n "$total" ] || fail "no max_connections in the $2 config"
    sed -i "/^\[limits\]\$/a max_connections_per_address = $total" "$etc/config.toml"
    iop-profile-server check-config --config "$etc/config.toml" >/dev/null
    systemctl restart "$unit"
    wait_active 60 "$pid"
    show NRestarts > /run/vm-test-restarts
    echo "$2: max_connections $total, memory.max $(cat "$cgroup/memory.max")"
    ;;
memory)
    # No OOM kill and no restart since flood-board; the peak under the limit.
    oom=$(awk '$1 == "oom_kill" { print $2 }' "$cgroup/memory.events")
    [ "$oom" = 0 ] || fail "$oom OOM kills"
    [ "$(show NRestarts)" = "$(cat /run/vm-test-restarts)" ] || fail "NRestarts $(show NRestarts)"
    [ "$(show ActiveState)" = active ] || fail "ActiveState $(show ActiveState)"
    peak=$(cat "$cgroup/memory.peak" 2>/dev/null || echo unknown)
    echo "no OOM kill; memory.peak $peak of memory.max $(cat "$cgroup/memory.max")"
    ;;
remove)
    apt-get remove -y -qq "$unit" >/dev/null
    [ ! -e /usr/bin/iop-profile-server ] || fail "remove left the binary"
    [ -s "$state/identity.key" ] || fail "remove deleted the data"
    [ -e "$etc/config.toml" ] || fail "remove deleted the configuration"
    dpkg --purge "$unit" >/dev/null
    [ ! -e "$state" ] && [ ! -L /var/lib/iop-profile-server ] || fail "purge left the data"
    [ ! -e "$etc/config.toml" ] || fail "purge left the configuration"
    echo "remove kept data and configuration; purge deleted both"
    ;;
*)
    fail "unknown step $1"
    ;;
esac
