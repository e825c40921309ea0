#!/usr/bin/env bash
# Builds the image the integration tests run containers from,
# berth-test/busybox:latest, without pulling anything: the machines this
# project runs on reach no container registry, and the engine starts empty.
# The image is Debian's statically linked busybox in an otherwise empty
# rootfs, imported with `docker import`.
#
# Usage: scripts/make-test-image.sh [--force]
#   Does nothing when the image already exists, unless --force.
#   Several test binaries may call this at once; a lock makes them wait for
#   the first instead of importing the image several times.
set -euo pipefail

IMAGE="${BERTH_TEST_IMAGE:-berth-test/busybox:latest}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
LOCK="${TMPDIR:-/tmp}/berth-make-test-image.lock"

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "make-test-image: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

die() { echo "make-test-image: $*" >&2; exit 1; }

command -v docker >/dev/null || die "no docker CLI on PATH"
docker version >/dev/null 2>&1 || die "the Docker engine does not answer (is dockerd running?)"

exec 9>"$LOCK"
if command -v flock >/dev/null; then
    flock 9
fi

if [[ $force == 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "make-test-image: $IMAGE already present"
    exit 0
fi

[[ -x $BUSYBOX ]] || die "$BUSYBOX not found: apt-get install busybox-static"
# A dynamically linked busybox would need its libc inside the image.
if ! "$BUSYBOX" --list >/dev/null 2>&1; then
    die "$BUSYBOX does not run"
fi
if command -v ldd >/dev/null && ldd "$BUSYBOX" 2>&1 | grep -q '=>'; then
    die "$BUSYBOX is dynamically linked: install busybox-static (it replaces busybox)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,var/tmp,home}
chmod 1777 "$root/tmp" "$root/var/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"

# Link every applet where busybox would install it. `--install -s` is not
# used: it links to the path the *host* busybox runs from, which need not
# be /bin/busybox inside the image.
if "$BUSYBOX" --list-full >/dev/null 2>&1; then
    applets="$("$BUSYBOX" --list-full)"
else
    applets="$("$BUSYBOX" --list | sed 's|^|bin/|')"
fi
while IFS= read -r applet; do
    [[ -z $applet || $applet == bin/busybox ]] && continue
    mkdir -p "$root/$(dirname "$applet")"
    [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done <<<"$applets"
[[ -e $root/bin/sh ]] || ln -s /bin/busybox "$root/bin/sh"

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo "berth-test" >"$root/etc/hostname"

tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
    docker import \
        --change 'CMD ["/bin/sh"]' \
        --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'LABEL org.berth.test-image=1' \
        --message "berth test image from $("$BUSYBOX" 2>&1 | head -n1)" \
        - "$IMAGE" >/dev/null

docker run --rm "$IMAGE" /bin/sh -c 'echo ok' | grep -qx ok ||
    die "$IMAGE was imported but cannot run /bin/sh"
echo "make-test-image: built $IMAGE"
