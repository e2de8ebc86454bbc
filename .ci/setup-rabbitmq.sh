# Sourced by .ci/run (as root, `set -euo pipefail`): installs Debian's RabbitMQ, starts a
# private node on a free loopback port and exports XIVO_BUS_COMPAT_URL for tests/compat.
# The node runs the rabbitmq_management plugin on another free loopback port, exported as
# XIVO_BUS_COMPAT_MANAGEMENT_URL: the reference for our management HTTP API.
#
# The node is ours alone: its own node name, ports, data and log directories, config and
# Erlang cookie, all under $XIVO_BUS_RABBITMQ_DIR. The system node of the package is never
# started. The node is stopped when .ci/run exits, unless XIVO_BUS_KEEP_RABBITMQ=1, in
# which case the next run reuses it. Run `bash .ci/setup-rabbitmq.sh stop` to stop a kept
# node by hand.

rabbitmq_dir=${XIVO_BUS_RABBITMQ_DIR:-/tmp/xivo-bus-rabbitmq}
rabbitmq_node=xivo-bus-compat@localhost
rabbitmq_bin=/usr/lib/rabbitmq/bin

# The environment the node and rabbitmqctl share; HOME holds the node's Erlang cookie.
_rabbitmq_env() {
    env HOME="$rabbitmq_dir/home" \
        RABBITMQ_NODENAME="$rabbitmq_node" \
        RABBITMQ_CONF_ENV_FILE="$rabbitmq_dir/rabbitmq-env.conf" \
        RABBITMQ_CONFIG_FILE="$rabbitmq_dir/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$rabbitmq_dir/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$rabbitmq_dir/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$rabbitmq_dir/mnesia" \
        RABBITMQ_LOG_BASE="$rabbitmq_dir/log" \
        RABBITMQ_PID_FILE="$rabbitmq_dir/node.pid" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        "$@"
}

_rabbitmq_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# True once the port answers the AMQP 0-9-1 header with a connection.start method frame.
_rabbitmq_answers() {
    python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as sock:
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    sys.exit(0 if sock.recv(7)[:1] == b"\x01" else 1)
EOF
}

# True once the management API answers GET /api/overview with 200 for guest:guest.
_rabbitmq_management_answers() {
    python3 - "$1" <<'EOF' 2>/dev/null
import base64, sys, urllib.request
request = urllib.request.Request(f"http://127.0.0.1:{int(sys.argv[1])}/api/overview")
request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
with urllib.request.urlopen(request, timeout=5) as response:
    sys.exit(0 if response.status == 200 else 1)
EOF
}

_rabbitmq_stop() {
    [ -d "$rabbitmq_dir" ] || return 0
    _rabbitmq_env timeout 30 "$rabbitmq_bin/rabbitmqctl" -q -n "$rabbitmq_node" stop \
        >/dev/null 2>&1 || true
    local pidfile pid
    for pidfile in "$rabbitmq_dir/node.pid" "$rabbitmq_dir/launcher.pid"; do
        pid=$(cat "$pidfile" 2>/dev/null) || continue
        kill "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
    if [ -e "$rabbitmq_dir/epmd-started-here" ]; then
        local epmd
        epmd=$(ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -n 1)
        [ -z "$epmd" ] || "$epmd" -kill >/dev/null 2>&1 || true
        rm -f "$rabbitmq_dir/epmd-started-here"
    fi
}

_rabbitmq_install() {
    if [ -x "$rabbitmq_bin/rabbitmq-server" ]; then
        # A system node is neither needed nor wanted next to the private one.
        if command -v systemctl >/dev/null && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
            echo "stopping the system RabbitMQ node (not needed by the tests)"
            systemctl stop rabbitmq-server
        fi
        return 0
    fi
    # Keep the package's system node from starting: a private node is all we want.
    local policy=/usr/sbin/policy-rc.d added_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
    fi
    apt-get install -y -q rabbitmq-server </dev/null ||
        { apt-get update -q </dev/null && apt-get install -y -q rabbitmq-server </dev/null; }
    [ -z "$added_policy" ] || rm -f "$policy"
}

_rabbitmq_start() {
    _rabbitmq_stop
    rm -rf "$rabbitmq_dir"
    mkdir -p "$rabbitmq_dir/home" "$rabbitmq_dir/mnesia" "$rabbitmq_dir/log"
    local port dist_port management_port
    port=$(_rabbitmq_free_port)
    dist_port=$(_rabbitmq_free_port)
    management_port=$(_rabbitmq_free_port)
    echo "[rabbitmq_management]." >"$rabbitmq_dir/enabled_plugins"
    : >"$rabbitmq_dir/rabbitmq-env.conf"
    cat >"$rabbitmq_dir/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$port
management.tcp.ip = 127.0.0.1
management.tcp.port = $management_port
disk_free_limit.absolute = 10MB
EOF
    echo "[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}]." >"$rabbitmq_dir/advanced.config"
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$rabbitmq_dir/home/.erlang.cookie"
    chmod 400 "$rabbitmq_dir/home/.erlang.cookie"
    pgrep -x epmd >/dev/null || : >"$rabbitmq_dir/epmd-started-here"
    (
        ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
        export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$port" \
            RABBITMQ_DIST_PORT="$dist_port"
        _rabbitmq_env setsid "$rabbitmq_bin/rabbitmq-server" </dev/null \
            >"$rabbitmq_dir/server.out" 2>&1
    ) </dev/null >/dev/null 2>&1 &
    echo $! >"$rabbitmq_dir/launcher.pid"
    echo "$port" >"$rabbitmq_dir/port"
    local deadline=$((SECONDS + ${XIVO_BUS_RABBITMQ_START_TIMEOUT:-90}))
    until _rabbitmq_answers "$port"; do
        if ! kill -0 "$(cat "$rabbitmq_dir/launcher.pid")" 2>/dev/null ||
            [ "$SECONDS" -ge "$deadline" ]; then
            echo "RabbitMQ node $rabbitmq_node did not accept AMQP on 127.0.0.1:$port;" \
                "its output ($rabbitmq_dir/server.out, logs in $rabbitmq_dir/log):" >&2
            tail -n 30 "$rabbitmq_dir/server.out" >&2 || true
            _rabbitmq_stop
            return 1
        fi
        sleep 0.25
    done
    # The management listener comes up after AMQP, once the plugin has booted.
    until _rabbitmq_management_answers "$management_port"; do
        if ! kill -0 "$(cat "$rabbitmq_dir/launcher.pid")" 2>/dev/null ||
            [ "$SECONDS" -ge "$deadline" ]; then
            echo "RabbitMQ node $rabbitmq_node did not serve its management API on" \
                "127.0.0.1:$management_port; its output ($rabbitmq_dir/server.out," \
                "logs in $rabbitmq_dir/log):" >&2
            tail -n 30 "$rabbitmq_dir/server.out" >&2 || true
            _rabbitmq_stop
            return 1
        fi
        sleep 0.25
    done
    # Written once it answers: a kept node without this file is restarted.
    echo "$management_port" >"$rabbitmq_dir/management_port"
}

if [ "${1:-}" = stop ]; then
    _rabbitmq_stop
    return 0 2>/dev/null || exit 0
fi

_rabbitmq_install
rabbitmq_port=$(cat "$rabbitmq_dir/port" 2>/dev/null || true)
rabbitmq_management_port=$(cat "$rabbitmq_dir/management_port" 2>/dev/null || true)
# A kept node is reused only with its management API (older kept nodes had none).
if [ -n "${XIVO_BUS_KEEP_RABBITMQ:-}" ] && [ -n "$rabbitmq_port" ] &&
    [ -n "$rabbitmq_management_port" ] && _rabbitmq_answers "$rabbitmq_port" &&
    _rabbitmq_management_answers "$rabbitmq_management_port"; then
    echo "reusing RabbitMQ node $rabbitmq_node on 127.0.0.1:$rabbitmq_port" \
        "(management on 127.0.0.1:$rabbitmq_management_port)"
else
    start_time=$SECONDS
    _rabbitmq_start
    rabbitmq_port=$(cat "$rabbitmq_dir/port")
    rabbitmq_management_port=$(cat "$rabbitmq_dir/management_port")
    echo "RabbitMQ node $rabbitmq_node accepts AMQP on 127.0.0.1:$rabbitmq_port and serves" \
        "its management API on 127.0.0.1:$rabbitmq_management_port" \
        "(started in $((SECONDS - start_time)) s)"
fi
if [ -z "${XIVO_BUS_KEEP_RABBITMQ:-}" ]; then
    # Chain onto whatever EXIT trap is already set, so the node never outlives the run.
    trap "_rabbitmq_stop; $(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")" EXIT
fi
export XIVO_BUS_COMPAT_URL="amqp://guest:guest@127.0.0.1:$rabbitmq_port/%2F"
export XIVO_BUS_COMPAT_MANAGEMENT_URL="http://127.0.0.1:$rabbitmq_management_port"
# rabbitmqctl for the node, for the compat scenarios of users, vhosts and permissions
{
    echo '#!/bin/sh'
    printf 'exec env HOME=%q RABBITMQ_NODENAME=%q ' "$rabbitmq_dir/home" "$rabbitmq_node"
    printf 'RABBITMQ_CONF_ENV_FILE=%q RABBITMQ_CONFIG_FILE=%q ' \
        "$rabbitmq_dir/rabbitmq-env.conf" "$rabbitmq_dir/rabbitmq.conf"
    printf 'RABBITMQ_ADVANCED_CONFIG_FILE=%q RABBITMQ_ENABLED_PLUGINS_FILE=%q ' \
        "$rabbitmq_dir/advanced.config" "$rabbitmq_dir/enabled_plugins"
    printf 'RABBITMQ_MNESIA_BASE=%q RABBITMQ_LOG_BASE=%q ERL_EPMD_ADDRESS=127.0.0.1 ' \
        "$rabbitmq_dir/mnesia" "$rabbitmq_dir/log"
    printf '%q -n %q "$@"\n' "$rabbitmq_bin/rabbitmqctl" "$rabbitmq_node"
} >"$rabbitmq_dir/rabbitmqctl"
chmod 700 "$rabbitmq_dir/rabbitmqctl"
export XIVO_BUS_COMPAT_CTL="$rabbitmq_dir/rabbitmqctl"
