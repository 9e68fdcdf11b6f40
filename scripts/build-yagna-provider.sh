#!/usr/bin/env bash
# Build the provider side of Golem (ya-provider, exe-unit) and a central-net hub
# (ya-sb-router) from the yagna source at the tag matching the requestor (v$YAGNA_VERSION),
# and cache the binaries in ~/.cache/golem-operator/yagna-provider-$YAGNA_VERSION/bin.
# The project never vendors that source: it is read at build time from
#   YAGNA_SRC            a yagna checkout or a (bare) git directory holding tag v$YAGNA_VERSION;
#                        without it the tag is cloned from github.com/golemfactory/yagna
#   YAGNA_GIT_MIRRORS    optional folder of local git mirrors of yagna's git dependencies
#                        (<dir>/golemfactory+<repo>/repo, <dir>/<repo>.git or <dir>/<repo>);
#                        cargo then resolves them offline through a private git config
# Needs cargo/rustc (tested with 1.95), protoc (Debian protobuf-compiler; installed here when
# missing and apt-get is usable) and git. A dev-profile build takes ~6 min on 2 quiet cores.
# Prints the bin directory on stdout; everything else goes to stderr.
set -euo pipefail
VERSION="${YAGNA_VERSION:-0.17.6}"
TAG="v$VERSION"
CACHE="${GOLEM_OPERATOR_CACHE:-$HOME/.cache/golem-operator}"
OUT="$CACHE/yagna-provider-$VERSION"
BINS=(ya-provider exe-unit ya-sb-router)
JOBS="${CARGO_BUILD_JOBS:-2}"
log() { echo "build-yagna-provider: $*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

complete() {
  local b
  [[ -f "$OUT/bin/.complete" ]] || return 1
  for b in "${BINS[@]}"; do [[ -x "$OUT/bin/$b" ]] || return 1; done
}
if complete && [[ -z "${YAGNA_PROVIDER_REBUILD:-}" ]]; then
  echo "$OUT/bin"
  exit 0
fi

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup, >= 1.90)"
command -v git >/dev/null || die "git not found"
if [[ -z "${PROTOC:-}" ]]; then
  if ! command -v protoc >/dev/null; then
    if command -v apt-get >/dev/null; then
      SUDO=""
      [[ $(id -u) -eq 0 ]] || SUDO="sudo"
      log "apt-get install protobuf-compiler (ya-relay-proto needs protoc)"
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler >&2 ||
        die "protoc missing and apt-get install protobuf-compiler failed"
    else
      die "protoc missing: install protobuf-compiler or set PROTOC"
    fi
  fi
  PROTOC="$(command -v protoc)"
fi
# Without these, ya-relay-proto downloads a protoc from GitHub and prost-build compiles
# a vendored protobuf with cmake.
export PROTOC PROTOC_NO_VENDOR=1

WORK="${YAGNA_BUILD_DIR:-$CACHE/build/yagna-provider-$VERSION}"
SRC="$WORK/src"
mkdir -p "$WORK"
started=$(date +%s)

# --- the source tree at the tag ------------------------------------------------------------
git_dir_of() { # a checkout or a git dir -> its git dir
  if git --git-dir="$1" rev-parse --git-dir >/dev/null 2>&1; then
    echo "$1"
  elif git -C "$1" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$1" rev-parse --absolute-git-dir
  else
    return 1
  fi
}
if [[ ! -f "$SRC/.extracted-$TAG" ]]; then
  rm -rf "$SRC"
  mkdir -p "$SRC"
  if [[ -n "${YAGNA_SRC:-}" ]]; then
    [[ -e "$YAGNA_SRC" ]] || die "YAGNA_SRC=$YAGNA_SRC does not exist"
    gd=$(git_dir_of "$YAGNA_SRC") || die "YAGNA_SRC=$YAGNA_SRC is neither a git checkout nor a git dir"
    git --git-dir="$gd" rev-parse -q --verify "$TAG^{commit}" >/dev/null ||
      die "YAGNA_SRC=$YAGNA_SRC has no tag $TAG (the requestor is yagna $VERSION)"
    log "source: $TAG from $YAGNA_SRC ($(git --git-dir="$gd" rev-parse --short "$TAG^{commit}"))"
    git --git-dir="$gd" archive "$TAG" | tar -x -C "$SRC"
  else
    log "source: cloning $TAG from https://github.com/golemfactory/yagna (no YAGNA_SRC given)"
    git clone -q --depth 1 --branch "$TAG" https://github.com/golemfactory/yagna "$WORK/clone" ||
      die "cannot clone github.com/golemfactory/yagna $TAG (no network?): set YAGNA_SRC to a checkout"
    git -C "$WORK/clone" archive "$TAG" | tar -x -C "$SRC"
    rm -rf "$WORK/clone"
  fi
  touch "$SRC/.extracted-$TAG"
fi
[[ -f "$SRC/agent/provider/Cargo.toml" && -f "$SRC/exe-unit/Cargo.toml" ]] ||
  die "$SRC does not look like the yagna source (no agent/provider, exe-unit)"

# The pinned toolchain (rust-toolchain.toml) cannot be downloaded offline; the installed one
# builds this tag.
rm -f "$SRC/rust-toolchain.toml" "$SRC/rust-toolchain"

# --- a workspace of only what the provider side needs --------------------------------------
# The root package (the yagna binary) pulls the erc20 payment library, whose pinned revision
# may be unavailable; the requestor and provider daemons come from the released yagna anyway.
python3 - "$SRC/Cargo.toml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
if "# provider-side workspace" in text:
    sys.exit(0)
sections = re.split(r"(?m)^(?=\[)", text)
keep = ("[workspace.lints.", "[workspace.dependencies]", "[patch.crates-io]")
out = ["# provider-side workspace (rewritten at build time)\n",
       "[workspace]\nresolver = \"2\"\n",
       "members = [\"agent/provider\", \"exe-unit\", \"loopback-hub\"]\n\n"]
for s in sections:
    head = s.split("\n", 1)[0].strip()
    if any(head.startswith(k) for k in keep):
        if head == "[workspace.dependencies]":
            s = "".join(l for l in s.splitlines(True) if not l.lstrip().startswith("erc20_"))
        out.append(s)
open(path, "w").write("".join(out))
PY

# The hub: yagna's central net needs a GSB router every node connects to. ya-sb-router is a
# library crate already in the dependency graph; this member gives it a main.
mkdir -p "$SRC/loopback-hub/src"
cat >"$SRC/loopback-hub/Cargo.toml" <<'TOML'
[package]
name = "loopback-hub"
version = "0.1.0"
edition = "2021"
publish = false

[[bin]]
name = "ya-sb-router"
path = "src/main.rs"

[dependencies]
ya-sb-router = "0.6.4"
actix-rt = "2.7"
anyhow = "1.0"
url = "2.1"
env_logger = "0.7"
TOML
cat >"$SRC/loopback-hub/src/main.rs" <<'RS'
//! Central-net hub for a private Golem network: a GSB router on the given URL.
//! Usage: ya-sb-router [-l] tcp://127.0.0.1:7477
use ya_sb_router::{InstanceConfig, RouterConfig};

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    env_logger::init();
    let arg = std::env::args()
        .skip(1)
        .find(|a| a != "-l")
        .unwrap_or_else(|| "tcp://127.0.0.1:7477".to_string());
    let url = url::Url::parse(&arg)?;
    InstanceConfig::new(RouterConfig::from_env())
        .run_url(Some(url))
        .await?;
    Ok(())
}
RS

# --- git dependencies from local mirrors (private git config, never ~/.gitconfig) ----------
export CARGO_NET_GIT_FETCH_WITH_CLI=true
if [[ -n "${YAGNA_GIT_MIRRORS:-}" ]]; then
  GITCONF="$WORK/gitconfig"
  : >"$GITCONF"
  git config --file "$GITCONF" protocol.file.allow always
  mapped=0
  for url in $(grep -o 'git+https://github.com/[^?#")]*' "$SRC/Cargo.lock" | sed 's/^git+//' | sort -u); do
    owner_repo=${url#https://github.com/}
    owner_repo=${owner_repo%.git}
    owner=${owner_repo%%/*} repo=${owner_repo#*/}
    mirror=""
    for cand in "$YAGNA_GIT_MIRRORS/$owner+$repo/repo" "$YAGNA_GIT_MIRRORS/golemfactory+$repo/repo" \
      "$YAGNA_GIT_MIRRORS/$repo.git" "$YAGNA_GIT_MIRRORS/$repo"; do
      if [[ -e "$cand" ]] && git_dir_of "$cand" >/dev/null; then
        mirror=$(git_dir_of "$cand")
        break
      fi
    done
    if [[ -z "$mirror" ]]; then
      log "no mirror of $owner/$repo under $YAGNA_GIT_MIRRORS: cargo will try github.com"
      continue
    fi
    for suffix in "" ".git"; do
      git config --file "$GITCONF" --add "url.file://$mirror.insteadOf" "https://github.com/$owner/$repo$suffix"
    done
    mapped=$((mapped + 1))
  done
  log "git dependencies: $mapped repositories mapped to mirrors under $YAGNA_GIT_MIRRORS"
  export GIT_CONFIG_GLOBAL="$GITCONF" GIT_CONFIG_NOSYSTEM=1
fi

# --- build ---------------------------------------------------------------------------------
cd "$SRC"
log "cargo fetch"
cargo fetch >&2 || die "cargo fetch failed (git dependencies or crates.io unreachable?)"
# Dev profile without debug info: the repo's release profile (fat LTO, one codegen unit)
# takes several times longer on small machines, and these binaries only serve tests.
log "cargo build -j$JOBS -p ya-provider -p ya-exe-unit -p loopback-hub (log: $WORK/build.log)"
if ! CARGO_PROFILE_DEV_DEBUG=0 CARGO_INCREMENTAL=0 nice -n "${BUILD_NICE:-10}" \
  cargo build -j"$JOBS" -p ya-provider -p ya-exe-unit -p loopback-hub --bins >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log" >&2
  die "cargo build failed (full log: $WORK/build.log)"
fi
mkdir -p "$OUT/bin"
for b in "${BINS[@]}"; do
  install -m 0755 "$SRC/target/debug/$b" "$OUT/bin/$b"
done
elapsed=$(($(date +%s) - started))
{
  echo "version=$VERSION"
  echo "tag=$TAG"
  echo "built=$(date -u +%FT%TZ)"
  echo "seconds=$elapsed"
  echo "rustc=$(rustc --version)"
} >"$OUT/bin/.complete"
log "built in ${elapsed}s -> $OUT/bin"
echo "$OUT/bin"
