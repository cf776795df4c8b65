#!/bin/bash
# Install what corral needs on a Debian 12 machine, as root.
#   scripts/setup.sh             install; start corrald (a systemd service where systemd runs, else in
#                                the background: PID in /run/corral/corrald.pid, log in
#                                /var/log/corrald.log); load a busybox image built from the host's
#                                busybox-static; run `corral run --rm busybox echo hello`
#   scripts/setup.sh --no-demo   install only, start nothing (used by scripts/test.sh and CI)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

APT_PACKAGES=(busybox-static runc crun containerd docker-registry skopeo umoci
              containernetworking-plugins libseccomp2 iproute2 iptables python3-venv
              openssl)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # packaged daemons (containerd, docker-registry) must not start on install: tests start their own
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
make -s proto PYTHON=.venv/bin/python
# bytecode now, as a non-editable install has it: where PYTHONDONTWRITEBYTECODE is set, every
# corral-runc call would otherwise compile its modules again (about 40 ms)
.venv/bin/python -m compileall -q src/corral >/dev/null

# containerd runs the shim's `start` and `delete` for every container, and the shim runs
# corral-runc create/start/delete/kill, which runs corral-oci-hook at each create (and people run
# `corral` on a latency path too): a launcher without the
# `import re` of pip's generated one (about 7 ms a call) and without the site module (-S, about
# 3-6 ms): it puts our source and the venv's packages on sys.path itself
.venv/bin/python - <<'LAUNCHER'
import os, sys, sysconfig
import corral
src = os.path.dirname(os.path.dirname(corral.__file__))
purelib = sysconfig.get_paths()["purelib"]
for name, module in (("containerd-shim-corral-v2", "corral.shim.main"), ("corral-runc", "corral.oci.cli"),
                     ("corral", "corral.cli.main"), ("corral-oci-hook", "corral.cni.hook")):
    path = os.path.join(sys.prefix, "bin", name)
    with open(path, "w") as f:
        f.write(f"#!{sys.prefix}/bin/python3 -S\nimport sys\nsys.path[:0] = [{src!r}]\nsys.path.append({purelib!r})\n"
                f"from {module} import main\nsys.exit(main())\n")
    os.chmod(path, 0o755)
# the shim's is a shell script in front of that: containerd runs `delete` after every task and
# waits for it; when the shim server already deleted the task completely it left the answer in
# the bundle (corral-deleted), printed here without starting Python (about 10 ms)
py = os.path.join(sys.prefix, "bin", "containerd-shim-corral-v2.py")
os.rename(os.path.join(sys.prefix, "bin", "containerd-shim-corral-v2"), py)
path = os.path.join(sys.prefix, "bin", "containerd-shim-corral-v2")
with open(path, "w") as f:
    f.write(f"""#!/bin/sh
if [ "$#" -gt 0 ] && eval 'test "${{'$#'}}" = delete'; then
    bundle=$PWD prev=
    for arg; do
        [ "$prev" = -bundle ] && bundle=$arg
        prev=$arg
    done
    if [ -f "$bundle/corral-deleted" ]; then
        cat "$bundle/corral-deleted" && exit 0
    fi
fi
exec {py} "$@"
""")
os.chmod(path, 0o755)
LAUNCHER

# entry points on PATH for containerd and for people (they name the venv's interpreter directly)
for bin in corral corral-runc corrald containerd-shim-corral-v2; do
    ln -sf "$ROOT/.venv/bin/$bin" "/usr/local/bin/$bin"
done

# the kernel's same-page merging (KSM): shim servers forked from one zygote hold many pages
# identical to each other's (Python writes to the objects it uses, which copies their pages),
# and offer them to ksmd (madvise MADV_MERGEABLE), which shares them again. ksmd scans only
# memory offered to it. When setup turns it on, it also sets ksmd's pace to 100 pages every
# 100 ms (about 0.5% of one core while shims run; the kernel's default, 20 ms, costs about 2%),
# kept across reboots by a tmpfiles.d file. CORRAL_KSM=0 leaves KSM alone.
KSM=/sys/kernel/mm/ksm
if [ "${CORRAL_KSM:-1}" != 0 ] && [ -w "$KSM/run" ] && [ "$(cat "$KSM/run")" = 0 ] \
        && (echo 100 > "$KSM/pages_to_scan" && echo 100 > "$KSM/sleep_millisecs" && echo 1 > "$KSM/run") 2>/dev/null; then
    echo "setup: turned on the kernel's same-page merging (KSM) for the shims ($KSM)"
    if [ -d /etc/tmpfiles.d ]; then
        printf 'w %s/%s - - - - %s\n' "$KSM" pages_to_scan 100 "$KSM" sleep_millisecs 100 "$KSM" run 1 \
            > /etc/tmpfiles.d/corral-ksm.conf
    fi
fi

if [ "${1:-}" = "--no-demo" ]; then
    exit 0
fi

SOCK=/run/corral/corrald.sock
PIDFILE=/run/corral/corrald.pid
LOG=/var/log/corrald.log
CORRAL=(/usr/local/bin/corral --address "$SOCK")

daemon_answers() { "${CORRAL[@]}" version >/dev/null 2>&1; }

start_corrald() {
    if daemon_answers; then
        echo "setup: corrald is already running on $SOCK"
        return
    fi
    if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && [ -d /run/systemd/system ]; then
        install -m 0644 scripts/corrald.service /etc/systemd/system/corrald.service
        systemctl daemon-reload
        systemctl enable -q corrald.service
        systemctl restart corrald.service
        echo "setup: corrald started as the systemd service corrald.service"
    else
        mkdir -p /run/corral
        chmod 0711 /run/corral
        if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null \
                && grep -q corrald "/proc/$(cat "$PIDFILE")/cmdline" 2>/dev/null; then
            echo "setup: corrald (pid $(cat "$PIDFILE")) is starting"
        else
            setsid /usr/local/bin/corrald </dev/null >>"$LOG" 2>&1 &
            echo $! > "$PIDFILE"
            echo "setup: corrald started in the background (pid $(cat "$PIDFILE"), log $LOG)"
        fi
    fi
    for _ in $(seq 300); do
        daemon_answers && return
        sleep 0.1
    done
    echo "setup: corrald did not answer on $SOCK within 30 s; see $LOG or journalctl -u corrald" >&2
    exit 1
}

start_corrald

# a busybox image from the host's busybox-static, so `corral run busybox ...` needs no network
if [ -z "$("${CORRAL[@]}" images -q busybox)" ]; then
    tmp=$(mktemp -d /tmp/corral-setup.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    .venv/bin/python -c "import sys; from corral.busybox import make_oci_archive; make_oci_archive(sys.argv[1], 'docker.io/library/busybox:latest')" "$tmp/busybox.tar"
    "${CORRAL[@]}" load -i "$tmp/busybox.tar"
fi

echo "setup: corral run --rm busybox echo hello"
"${CORRAL[@]}" run --rm busybox echo hello
