#!/usr/bin/env bash
# Makes, without pulling anything, the two base images deploy/Dockerfile
# starts FROM, under the names a registry would give them:
#
#   debian:bookworm-slim  a minimal Debian 12 root filesystem made with
#                         `debootstrap --variant=minbase bookworm` from
#                         Debian's mirror, trimmed like the official slim
#                         image (no docs, man pages or locales; apt cleans
#                         its caches), and `docker import`ed.
#   rust:1-bookworm       FROM that debian:bookworm-slim, plus gcc and
#                         libc6-dev, plus THIS machine's Rust toolchain
#                         (`rustc --print sysroot`, docs left out) at
#                         /usr/local/rustup with cargo and rustc on PATH as
#                         in the official image, plus the crates of this
#                         repository's Cargo.lock vendored (`cargo vendor`)
#                         into /usr/local/cargo/vendor with a cargo config
#                         that builds from them offline.
#
# The machines this project runs on reach no container registry but do
# reach Debian's mirror and crates.io from the host. Containers, though,
# cannot fetch crates (the TLS egress there is not trusted inside them),
# hence the vendored crates: the Dockerfile itself stays exactly what a
# user with a registry builds against the real images.
#
# Usage: deploy/make-base-image.sh [--force] [debian|rust|all]   (default all)
#   Idempotent: an image that exists and is current is kept. Current means,
#   for debian:bookworm-slim, that it exists at all (a real one pulled from
#   a registry is never replaced); for rust:1-bookworm, that its labels
#   name this machine's rustc version and the sha256 of Cargo.lock (a
#   changed Cargo.lock re-vendors, which reuses the toolchain layer).
#   --force rebuilds ours (never a pulled one).
# Environment: BERTH_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#   BERTH_BASE_IMAGE (default debian:bookworm-slim),
#   BERTH_RUST_IMAGE (default rust:1-bookworm).
# Needs: root, docker, debootstrap (apt-get install debootstrap), cargo.
set -euo pipefail

cd "$(dirname "$0")/.."
MIRROR="${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_IMAGE="${BERTH_BASE_IMAGE:-debian:bookworm-slim}"
RUST_IMAGE="${BERTH_RUST_IMAGE:-rust:1-bookworm}"
SUITE=bookworm
LABEL=org.berth.base-image # set on the images this script makes

force=0
what=all
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        debian | rust | all) what=$arg ;;
        -h | --help) sed -n '2,38p' "$0"; exit 0 ;;
        *) echo "make-base-image: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

say() { echo "make-base-image: $*"; }
die() { echo "make-base-image: $*" >&2; exit 1; }

command -v docker >/dev/null || die "no docker CLI on PATH"
docker version >/dev/null 2>&1 || die "the Docker engine does not answer"

# Several CI steps may call this at once; the first one builds.
exec 9>"${TMPDIR:-/tmp}/berth-make-base-image.lock"
command -v flock >/dev/null && flock 9

label_of() { docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }

work=
cleanup() { if [[ -n $work ]]; then rm -rf "$work"; fi; }
trap cleanup EXIT
mkwork() { [[ -n $work ]] || work="$(mktemp -d /var/tmp/berth-base.XXXXXX)"; }

make_debian() {
    if exists "$BASE_IMAGE"; then
        local ours
        ours="$(label_of "$BASE_IMAGE" "$LABEL")"
        if [[ -z $ours ]]; then
            say "$BASE_IMAGE exists and was not made here (pulled?): kept as is"
            return
        fi
        if [[ $force == 0 ]]; then
            say "$BASE_IMAGE already present ($ours)"
            return
        fi
    fi
    command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
    [[ $(id -u) == 0 ]] || die "debootstrap needs root"
    mkwork
    local root="$work/rootfs" t0=$SECONDS
    say "debootstrap --variant=minbase $SUITE from $MIRROR ..."
    if ! debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1; then
        tail -n 30 "$work/debootstrap.log" >&2
        die "debootstrap failed (log above)"
    fi
    say "debootstrap took $((SECONDS - t0)) s"

    # What the official slim image does (debuerreotype's --slimify and its
    # docker tweaks): keep docs and locales out, apt cleans after itself.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
    echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
    find "$root/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete 2>/dev/null || true
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$root"/usr/share/{man,info,groff,linda,lintian}/* "$root"/usr/share/locale/*/ 2>/dev/null || true
    # The same sources as the official image, in deb822 form.
    rm -f "$root/etc/apt/sources.list"
    local sec="${MIRROR%/debian}/debian-security"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $sec
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/*.log \
        "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache 2>/dev/null || true
    : >"$root/etc/resolv.conf"
    echo localhost >"$root/etc/hostname"
    rm -f "$root/etc/machine-id" && : >"$root/etc/machine-id"

    say "importing as $BASE_IMAGE"
    tar --numeric-owner -C "$root" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
        docker import \
            --change 'CMD ["bash"]' \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change "LABEL $LABEL=debootstrap-minbase-$SUITE" \
            --message "debootstrap --variant=minbase $SUITE $MIRROR (berth deploy/make-base-image.sh)" \
            - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    docker run --rm --network none "$BASE_IMAGE" sh -c '. /etc/os-release && echo "$PRETTY_NAME"' ||
        die "$BASE_IMAGE was imported but does not run"
    say "built $BASE_IMAGE ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

make_rust() {
    command -v rustc >/dev/null || die "no rustc on PATH"
    local rustc_v lock_sha sysroot toolchain_image
    rustc_v="$(rustc --version | awk '{print $2}')"
    lock_sha="$(sha256sum Cargo.lock | cut -c1-16)"
    toolchain_image="berth-base/rust-toolchain:$rustc_v"
    if exists "$RUST_IMAGE"; then
        local ours have_v have_lock
        ours="$(label_of "$RUST_IMAGE" "$LABEL")"
        if [[ -z $ours ]]; then
            say "$RUST_IMAGE exists and was not made here (pulled?): kept as is"
            return
        fi
        have_v="$(label_of "$RUST_IMAGE" org.berth.rustc)"
        have_lock="$(label_of "$RUST_IMAGE" org.berth.cargo-lock)"
        if [[ $force == 0 && $have_v == "$rustc_v" && $have_lock == "$lock_sha" ]]; then
            say "$RUST_IMAGE already present (rustc $rustc_v, Cargo.lock $lock_sha)"
            return
        fi
        say "$RUST_IMAGE is stale (rustc ${have_v:-?}, Cargo.lock ${have_lock:-?}): rebuilding"
    fi
    exists "$BASE_IMAGE" || make_debian
    mkwork

    # 1. Compiler and toolchain, reused while rustc's version stays.
    if [[ $force == 1 ]] || ! exists "$toolchain_image"; then
        sysroot="$(rustc --print sysroot)"
        [[ -x $sysroot/bin/cargo ]] || die "no cargo in $sysroot/bin"
        local ctx="$work/toolchain-ctx" t0=$SECONDS
        mkdir -p "$ctx/toolchain"
        # Docs (share/doc) are most of a toolchain's size and unused here.
        tar -C "$sysroot" --exclude='./share/doc' -c . | tar -C "$ctx/toolchain" -x
        cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev make pkg-config \\
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$rustc_v
COPY toolchain /usr/local/rustup/toolchains/$rustc_v-x86_64-unknown-linux-gnu
RUN mkdir -p /usr/local/cargo/bin \\
 && for b in /usr/local/rustup/toolchains/$rustc_v-x86_64-unknown-linux-gnu/bin/*; do ln -s "\$b" /usr/local/cargo/bin/; done \\
 && rustc --version && cargo --version
LABEL $LABEL=host-toolchain org.berth.rustc=$rustc_v
EOF
        say "building $toolchain_image from $sysroot ..."
        docker build -q --force-rm -t "$toolchain_image" "$ctx" >/dev/null
        rm -rf "$ctx"
        say "toolchain image took $((SECONDS - t0)) s"
    fi

    # 2. This Cargo.lock's crates, vendored, and cargo told to use them.
    local vctx="$work/vendor-ctx" t1=$SECONDS
    mkdir -p "$vctx"
    say "cargo vendor (Cargo.lock $lock_sha) ..."
    cargo vendor --locked --versioned-dirs "$vctx/vendor" >/dev/null 2>"$work/vendor.log" ||
        { tail -n 20 "$work/vendor.log" >&2; die "cargo vendor failed"; }
    cat >"$vctx/config.toml" <<'EOF'
# Made by berth's deploy/make-base-image.sh: this image builds offline from
# the crates vendored for one Cargo.lock (label org.berth.cargo-lock).
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/usr/local/cargo/vendor"

[net]
offline = true
EOF
    cat >"$vctx/Dockerfile" <<EOF
FROM $toolchain_image
COPY vendor /usr/local/cargo/vendor
COPY config.toml /usr/local/cargo/config.toml
LABEL $LABEL=host-toolchain-vendored org.berth.rustc=$rustc_v org.berth.cargo-lock=$lock_sha
EOF
    docker build -q --force-rm -t "$RUST_IMAGE" "$vctx" >/dev/null
    rm -rf "$vctx"
    say "vendored crates took $((SECONDS - t1)) s"
    docker run --rm --network none "$RUST_IMAGE" cargo --version >/dev/null || die "$RUST_IMAGE has no working cargo"
    # Drop the image the tag pointed at before, if nothing else uses it.
    docker image prune -f --filter "label=$LABEL=host-toolchain-vendored" >/dev/null 2>&1 || true
    say "built $RUST_IMAGE (rustc $rustc_v, Cargo.lock $lock_sha)"
}

case "$what" in
    debian) make_debian ;;
    rust) make_rust ;;
    all) make_debian; make_rust ;;
esac
