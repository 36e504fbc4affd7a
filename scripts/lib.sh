# Shell functions the scripts here share; `source "$(dirname "$0")/lib.sh"`.

# apt_install WHO WHAT PACKAGE...: install Debian packages as root, or say why not and exit
apt_install() {
    local who="$1" what="$2"
    shift 2
    if [ "$(id -u)" != 0 ]; then
        echo "$who: $what not installed; run as root to install it" >&2
        exit 1
    fi
    echo "$who: installing $what (Debian packages: $*)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "$@" >&2
}

# port_in_use PORT: true when something listens on 127.0.0.1:PORT
port_in_use() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
PY
}

# free_port: a port free on 127.0.0.1 now
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
