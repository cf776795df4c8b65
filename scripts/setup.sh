#!/bin/bash
# Install what corral needs on a Debian 12 machine, as root.
#   scripts/setup.sh          install, then run a busybox container with corral-runc
#   scripts/setup.sh --no-demo   install only (used by scripts/test.sh)
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

# containerd runs the shim's `start` and `delete` for every container: a launcher without the
# `import re` of pip's generated one (about 7 ms a call)
printf '#!%s\nimport sys\nfrom corral.shim.main import main\nsys.exit(main())\n' "$ROOT/.venv/bin/python3" \
    > .venv/bin/containerd-shim-corral-v2

# entry points on PATH for containerd and for people (they name the venv's interpreter directly)
for bin in corral-runc corrald containerd-shim-corral-v2; do
    ln -sf "$ROOT/.venv/bin/$bin" "/usr/local/bin/$bin"
done

if [ "${1:-}" != "--no-demo" ]; then
    demo=$(mktemp -d /tmp/corral-demo.XXXXXX)
    trap 'rm -rf "$demo"' EXIT
    .venv/bin/python -c "from corral.busybox import make_bundle; make_bundle('$demo', args=['echo', 'hello from a corral container'])"
    cd "$demo" && corral-runc run "demo-$$"
fi
