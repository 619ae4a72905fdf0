# Shared by the bench/*.sh scripts (sourced, not run): logging, package installation and the
# postern binary to measure.

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    printf '[bench] error: %s\n' "$*" >&2
    exit 1
}

# Deletes the run's temp dir $TMP, or keeps it and says where when KEEP_TMP=1.
remove_tmp() {
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        command -v sudo >/dev/null || die "run as root, or install sudo, to run: $*"
        sudo "$@"
    fi
}

# Installs Debian packages (apt-get, no questions asked). $1 says what they are for, in the
# refusal when neither root nor sudo is at hand.
apt_install() { # what packages...
    local what=$1
    shift
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
        die "run as root or install $what"
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# Puts the postern binary to measure at $1: a copy of POSTERN_BIN when it is given, else a
# fresh release build's (a private copy: a shared target dir may be rebuilt while the
# benchmark runs). Sets BENCH_REV, unless given, to what was measured: POSTERN_BIN, or the git
# commit ("+ uncommitted changes" when src/ differs from HEAD at build time).
postern_binary() { # destination
    local dest=$1 head_before target_dir
    if [ -n "${POSTERN_BIN:-}" ]; then
        [ -x "$POSTERN_BIN" ] || die "POSTERN_BIN=$POSTERN_BIN is not an executable file"
        BENCH_REV=${BENCH_REV:-"$POSTERN_BIN"}
        cp "$POSTERN_BIN" "$dest"
        return
    fi
    command -v cargo >/dev/null || die "cargo is required (or give POSTERN_BIN)"
    head_before=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    log "cargo build --release"
    cargo build --release
    target_dir=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    if [ -z "${BENCH_REV:-}" ]; then
        BENCH_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
        if [ "$BENCH_REV" != "$head_before" ]; then
            BENCH_REV="$head_before..$BENCH_REV (HEAD moved during the build)"
        fi
        if ! git diff --quiet HEAD -- src migrations config Cargo.toml Cargo.lock 2>/dev/null ||
            [ -n "$(git ls-files --others --exclude-standard -- src migrations 2>/dev/null)" ]; then
            BENCH_REV="$BENCH_REV + uncommitted changes"
        fi
    fi
    cp "$target_dir/release/postern" "$dest"
}
