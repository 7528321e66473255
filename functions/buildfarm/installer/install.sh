#!/usr/bin/env bash
# Python Build Farm quick installer.
#
#   curl -fsSL <base>/install.sh | bash -s -- [--version 3.13.5 [--build N] | --version 3.13 | --list]
#                                              [--prefix DIR] [--pubkey FILE|SHA256:<hex>]
#
# Detects this machine's platform (/etc/os-release) and arch, reads <base>/versions.json,
# verifies the artifact's sha256 and installs the newest build of the chosen version (or, with
# --build N, that earlier build of it): the .deb/.rpm through the system package manager (so
# dependencies resolve), or with --prefix the relocatable tarball under DIR.
#
# When a signing key is pinned (--pubkey, else the keys baked in at publishing), nothing is
# trusted before openssl has verified, with that key, the signature of versions.json and of
# the build's SHA256SUMS, and the artifact's sha256 agrees with both (an earlier build's with
# its SHA256SUMS: versions.json lists only the newest build).

# Run by sh (`curl ... | sh`, `sh install.sh`: dash, or another shell), stop here with one line,
# before any bash syntax: a POSIX sh reads and runs this much, one command at a time.
if [ -z "${BASH_VERSION:-}" ]; then
  echo "install.sh: run it with bash" >&2
  exit 1
fi
# bash run as sh (RHEL's /bin/sh) starts in POSIX mode, where bash before 5.1 parses no <(...).
case ":${SHELLOPTS:-}:" in *:posix:*) set +o posix ;; esac
set -euo pipefail

# Publishing (buildfarm run, buildfarm reindex --base-url) fills this in with the store's
# public base URL; BUILDFARM_BASE_URL and --base-url override it.
DEFAULT_BASE_URL="@BASE_URL@"
# Publishing also fills in the fingerprints of the store's signing keys (keys/keys.json), so
# a swap of artifacts, checksums or catalog alone is refused; --pubkey overrides them.
BAKED_FINGERPRINTS="@KEY_FINGERPRINTS@"
# And each platform's runtime library packages (builder_image/platforms.json's
# runtime_dependencies: what a tarball links), "<platform>=<package>,<package>,... ...", named
# when a --prefix install cannot import a module that links one of them.
RUNTIME_PACKAGES="@RUNTIME_PACKAGES@"

usage() {
  local published="$DEFAULT_BASE_URL"
  if [[ "$published" == "@BASE_URL@" ]]; then
    published="(none: this copy was not published by a farm)"
  fi
  local baked="$BAKED_FINGERPRINTS"
  if [[ "$baked" == "@KEY_FINGERPRINTS@" || -z "$baked" ]]; then
    baked="(none: signatures are checked only with --pubkey)"
  fi
  cat <<USAGE
Usage: install.sh [--version VERSION [--build N] | --list] [--prefix DIR] [--base-url URL]
                  [--pubkey FILE|SHA256:<hex> ...] [--skip-signatures]

  --version VERSION  install this Python version (3.13.5), or the newest of a series (3.13)
                     (default: the newest final release built for this machine, else
                     its newest pre-release)
  --build N          install build N of --version X.Y.Z (an exact version, not a series)
                     instead of its newest build: an earlier one, e.g. to roll back to
                     build 1 when build 2 is broken. N is 1, 2, ... up to the build
                     versions.json lists for this machine; its sha256 comes from that
                     build's own SHA256SUMS, whose signature is checked as the newest's
  --list             list the versions built for this machine and exit
  --prefix DIR       install the relocatable tarball into DIR (no root needed) instead of
                     the system package. DIR is new, empty, or an earlier install.sh
                     install, which is replaced whole (packages installed into it too).
                     The tarball uses the system's OpenSSL, SQLite, readline, ...: if a
                     module does not import, it says which packages to install
  --base-url URL     where the farm's store is served. Default: \$BUILDFARM_BASE_URL, else
                     the URL this script was published for:
                     $published
                     (plain http:// only to this machine, or with a signing key pinned)
  --pubkey KEY       trust only what this signing key signed: a PEM public key FILE, or a
                     fingerprint SHA256:<hex> (as \`buildfarm status\` shows it) whose key is
                     fetched from the store's keys/ and checked. Repeat it to pin several keys
                     (a key rotation). Needs openssl. Default: the keys this script was
                     published with:
                     $baked
  --skip-signatures  do not check signatures (the sha256s of versions.json alone)
  -h, --help         show this help

Every option that takes a value refuses an empty one.

Environment:
  BUILDFARM_BASE_URL    the store's URL, as --base-url (the option wins)
  BUILDFARM_OS_RELEASE  the os-release file that says which platform this machine is
                        (default: /etc/os-release)
USAGE
}

die() {
  printf 'install.sh: error: %s\n' "$*" >&2
  exit 1
}

say() { printf 'install.sh: %s\n' "$*" >&2; }

version=""
build_wanted=""
list_only=0
prefix=""
prefix_given=0
base_url="${BUILDFARM_BASE_URL:-$DEFAULT_BASE_URL}"
pubkeys=()
skip_signatures=0

# An empty value is refused, never read as the option's absence: `--prefix "$DIR"` with DIR
# unset must not become a system-wide package install.
set_option() { # OPTION VALUE
  [[ -n "$2" ]] || die "$1 needs a value (it was given an empty one); nothing installed"
  case "$1" in
    --version) version="$2" ;;
    --build) build_wanted="$2" ;;
    --prefix) prefix="$2"; prefix_given=1 ;;
    --base-url) base_url="$2" ;;
    --pubkey) pubkeys+=("$2") ;;
  esac
}

while (($#)); do
  case "$1" in
    --version | --build | --prefix | --base-url | --pubkey)
      (($# >= 2)) || die "$1 needs a value"
      set_option "$1" "$2"; shift 2 ;;
    --version=* | --build=* | --prefix=* | --base-url=* | --pubkey=*) set_option "${1%%=*}" "${1#*=}"; shift ;;
    --list) list_only=1; shift ;;
    --skip-signatures) skip_signatures=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

# protocols: what curl may fetch, redirects included (an https store is never left for http;
# a plain-http store is followed through no redirect at all: see fetch).
case "$base_url" in
  https://*) protocols="=https" ;;
  http://*) protocols="=http" ;;
  file://*) protocols="=file" ;;
  "@BASE_URL@" | "") die "no store URL: pass --base-url URL (or set BUILDFARM_BASE_URL)" ;;
  *) die "base URL '$base_url' must start with http://, https:// or file://" ;;
esac
# user@host: what is before the '@' is no host, though it could pass for one (localhost:x@...).
authority="${base_url#*://}"
if [[ "${authority%%/*}" == *@* ]]; then
  die "base URL '$base_url' has user info (an '@' before the host): give the store's URL without it"
fi
base_url="${base_url%/}"
if ((skip_signatures && ${#pubkeys[@]})); then
  die "--pubkey and --skip-signatures contradict each other: pass one"
fi
if [[ -n "$version" && ! "$version" =~ ^3\.[0-9]+(\.[0-9]+((a|b|rc)[0-9]+)?)?$ ]]; then
  die "malformed version '$version' (expected e.g. 3.13.5, 3.14.0rc2 or a series, 3.13)"
fi
# A build number as the store's keys spell it (layout.BUILD_NUMBER): no sign, no leading zero,
# at most 9 digits. The digits are listed, not a range, which a locale may stretch past ASCII.
BUILD_NUMBER='^[123456789][0123456789]{0,8}$'
if [[ -n "$build_wanted" ]]; then
  if [[ ! "$build_wanted" =~ $BUILD_NUMBER ]]; then
    shown="'$build_wanted'"
    [[ "$build_wanted" != *[[:cntrl:]]* ]] || shown=$(printf '%q' "$build_wanted")
    die "--build $shown is not a build number (1, 2, ...: ASCII digits, no leading zero, at most 9 of them); nothing installed"
  fi
  [[ -n "$version" ]] ||
    die "--build $build_wanted needs the exact version it is a build of: pass --version X.Y.Z too; nothing installed"
  if [[ "$version" =~ ^3\.[0-9]+$ ]]; then
    die "--build $build_wanted needs an exact version, not the series $version: builds are numbered per release (--version $version.N); nothing installed"
  fi
fi

# --- where are we -----------------------------------------------------------------------

# Maps /etc/os-release to a farm platform id; kept in step with builder_image/platforms.json
# by the test suite.
detect_platform() {
  local os_release="${BUILDFARM_OS_RELEASE:-/etc/os-release}"
  [[ -r "$os_release" ]] || die "cannot read $os_release: unsupported system"
  local id version_id id_like
  id=$(os_release_field ID "$os_release")
  version_id=$(os_release_field VERSION_ID "$os_release")
  id_like=$(os_release_field ID_LIKE "$os_release")
  local major="${version_id%%.*}"
  case "$id" in
    debian)
      case "$major" in 11 | 12 | 13) echo "debian-$major"; return ;; esac ;;
    ubuntu)
      case "$version_id" in 20.04 | 22.04 | 24.04 | 26.04) echo "ubuntu-${version_id/./}"; return ;; esac ;;
    rhel | rocky | almalinux | centos | ol)
      case "$major" in 8 | 9 | 10) echo "rhel-$major"; return ;; esac ;;
    opensuse-leap)
      case "$version_id" in 15.5 | 15.6 | 16.0) echo "opensuse-${version_id/./}"; return ;; esac ;;
    amzn)
      case "$version_id" in 2023) echo "amazonlinux-2023"; return ;; esac ;;
    *)
      if [[ " $id_like " == *" rhel "* ]]; then
        case "$major" in 8 | 9 | 10) echo "rhel-$major"; return ;; esac
      fi ;;
  esac
  die "unsupported distribution: ${id:-unknown} ${version_id:-?} (supported: Debian 11-13, Ubuntu 20.04-26.04 LTS, RHEL-compatible 8-10, openSUSE Leap 15.5-16.0, Amazon Linux 2023)"
}

# Reads one KEY=value line of an os-release file without executing it.
os_release_field() {
  local value
  value=$(sed -n "s/^$1=//p" "$2" | head -n 1)
  value="${value%\"}"; value="${value#\"}"
  value="${value%\'}"; value="${value#\'}"
  printf '%s' "$value"
}

detect_arch() {
  local machine
  machine=$(uname -m)
  case "$machine" in
    x86_64 | amd64) echo x86_64 ;;
    aarch64 | arm64) echo aarch64 ;;
    *) die "unsupported CPU architecture: $machine (supported: x86_64, aarch64)" ;;
  esac
}

# --- fetching and reading the catalog ---------------------------------------------------

# Redirects: curl follows an https store's to https only (--proto-redir). A plain-http store's
# are followed by neither curl nor wget: one could lead to plain http on another machine,
# which a loopback store's plain http was allowed for this machine only. wget cannot limit
# where a redirect leads (its --https-only filters only the links of a recursive download),
# so it follows none from an https store either.
HTTP_NO_REDIRECT="a plain-http store is followed through no redirect: if it redirects, give --base-url the URL it redirects to"
fetch() { # URL DEST [MESSAGE if it cannot be downloaded]
  local status=0 why=""
  if command -v curl >/dev/null 2>&1; then
    local redirects=()
    [[ "$protocols" != "=http" ]] || redirects=(--max-redirs 0)
    curl -fsSL --retry 3 --proto "$protocols" --proto-redir "$protocols" "${redirects[@]}" -o "$2" "$1" ||
      status=$?
    # 47: a redirect past --max-redirs.
    [[ "$status" != 47 || "$protocols" != "=http" ]] || why=" ($HTTP_NO_REDIRECT)"
  elif command -v wget >/dev/null 2>&1; then
    local no_redirect=()
    case "$protocols" in
      =https) why=" (wget follows no redirect from an https store: if it redirects, install curl)" ;;
      =http) why=" ($HTTP_NO_REDIRECT)" ;;
    esac
    [[ -z "$why" ]] || no_redirect=(--max-redirect=0)
    wget -q "${no_redirect[@]}" -O "$2" "$1" || status=$?
  else
    die "neither curl nor wget is installed"
  fi
  ((status == 0)) || die "${3:-download failed: $1}$why"
}

# Flattens JSON into "path<TAB>value" lines (path segments joined by '/'), e.g.
#   builds/3.13.5/debian-12/x86_64/artifacts/0/sha256<TAB>ab12...
# POSIX awk only (mawk on minimal Debian), so no python or jq is needed.
json_flatten() {
  awk '
    BEGIN { RS = "\001"; depth = 0 }
    {
      s = $0; n = length(s); i = 1
      while (i <= n) {
        c = substr(s, i, 1)
        if (c == "{" || c == "[") {
          depth++; kind[depth] = c; idx[depth] = 0; expect_key[depth] = (c == "{"); key[depth] = ""
          i++; continue
        }
        if (c == "}" || c == "]") { depth--; i++; finish_value(); continue }
        if (c == ",") { if (kind[depth] == "{") expect_key[depth] = 1; else idx[depth]++; i++; continue }
        if (c == ":") { expect_key[depth] = 0; i++; continue }
        if (c == "\"") {
          j = i + 1; str = ""
          while (j <= n) {
            d = substr(s, j, 1)
            if (d == "\\") { str = str substr(s, j, 2); j += 2; continue }
            if (d == "\"") break
            str = str d; j++
          }
          i = j + 1
          if (kind[depth] == "{" && expect_key[depth]) { key[depth] = str; continue }
          emit(str); continue
        }
        if (c ~ /[-0-9tfn]/) {
          j = i
          while (j <= n && substr(s, j, 1) ~ /[-+.0-9eEtruflsan]/) j++
          emit(substr(s, i, j - i)); i = j; continue
        }
        i++
      }
    }
    function path(   p, k) {
      p = ""
      for (k = 1; k <= depth; k++) p = p (k > 1 ? "/" : "") (kind[k] == "{" ? key[k] : idx[k])
      return p
    }
    function emit(v) { print path() "\t" v }
    function finish_value() { }
  '
}

# --- signatures --------------------------------------------------------------------------
# Each pinned key is a PEM file $workdir/keys/<hex>.pem, <hex> its fingerprint: the SHA-256
# of its DER SubjectPublicKeyInfo (as buildfarm names keys).

# The fingerprint hex of a PEM public key file; fails for anything else.
key_fingerprint() {
  local hex
  hex=$(openssl pkey -pubin -in "$1" -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1) || return 1
  printf '%s' "$hex"
}

pin_key_file() { # FILE
  [[ -f "$1" && -r "$1" ]] || die "--pubkey '$1': no such readable file"
  local hex
  hex=$(key_fingerprint "$1") || die "--pubkey '$1': not a PEM public key"
  cp "$1" "$workdir/keys/$hex.pem"
}

pin_fingerprint() { # SHA256:<hex> WHERE-IT-CAME-FROM: fetch keys/<hex>.pub, check it is that key
  local hex="${1#SHA256:}" actual
  if [[ "$1" != SHA256:* || ! "$hex" =~ ^[0-9a-f]{64}$ ]]; then
    die "$2 '$1' is not a key fingerprint (SHA256: and 64 lowercase hex digits, as buildfarm status shows)"
  fi
  fetch "$base_url/keys/$hex.pub" "$workdir/keys/$hex.pem" \
    "the store has no key $1 ($base_url/keys/$hex.pub: download failed); nothing installed"
  actual=$(key_fingerprint "$workdir/keys/$hex.pem") ||
    die "keys/$hex.pub is not a PEM public key; nothing installed"
  [[ "$actual" == "$hex" ]] ||
    die "keys/$hex.pub is key SHA256:$actual, not the pinned $1; nothing installed"
}

# Pins the keys named by --pubkey, else those baked in at publishing; signed=1 if any.
pin_keys() {
  local sources=("${pubkeys[@]}") where="--pubkey" source
  signed=0
  ((skip_signatures == 0)) || return 0
  if ((${#sources[@]} == 0)) && [[ "$BAKED_FINGERPRINTS" != "@KEY_FINGERPRINTS@" ]]; then
    read -r -a sources <<<"$BAKED_FINGERPRINTS"
    where="the published key"
  fi
  ((${#sources[@]})) || return 0
  command -v openssl >/dev/null 2>&1 || die "a signing key is pinned ($where ${sources[*]}) but openssl is not installed: install the openssl package and rerun (or pass --skip-signatures to trust the sha256s alone)"
  mkdir "$workdir/keys"
  for source in "${sources[@]}"; do
    case "$source" in
      SHA256:*) pin_fingerprint "$source" "$where" ;;
      *) pin_key_file "$source" ;;
    esac
  done
  signed=1
}

pinned_names() { # the pinned keys' fingerprints, for messages
  local key names=()
  for key in "$workdir"/keys/*.pem; do
    key="${key##*/}"
    names+=("SHA256:${key%.pem}")
  done
  printf '%s' "${names[*]}"
}

verify_signed() { # FILE URL NAME [HINT]: FILE (downloaded from URL) is signed by a pinned key
  local key
  fetch "$2.sig" "$1.sig" "$3 has no signature ($2.sig: download failed); nothing installed"
  for key in "$workdir"/keys/*.pem; do
    if openssl dgst -sha256 -verify "$key" -signature "$1.sig" "$1" >/dev/null 2>&1; then
      key="${key##*/}"
      say "signature verified: $3 (key SHA256:${key%.pem})"
      return 0
    fi
  done
  die "$3 is not signed by the pinned key ($(pinned_names)): refusing it${4:-}; nothing installed"
}

# Whether a http:// URL names this machine (127.0.0.0/8, localhost or [::1]): its whole
# authority is that host and an optional port, nothing curl could read another host in.
loopback_url() {
  local authority="${1#http://}"
  authority="${authority%%/*}"
  [[ "$authority" =~ ^(localhost|\[::1\]|127(\.[0-9]{1,3}){3})(:[0-9]+)?$ ]]
}

# The file in a --prefix that says install.sh put a Python there (and may replace it).
INSTALL_MARKER=".buildfarm-install"

# Unpacks the tarball beside DIR, then puts it in DIR's place whole: a failed unpack leaves
# DIR as it was, and an earlier install there is replaced, not mixed with this one. DIR must
# be new, empty or such an earlier install: anything else is refused untouched.
# Every name written beside DIR is in staging, a fresh private directory (mktemp -d, 0700): the
# new tree is unpacked into it and an earlier install moved into it, so no name another local
# user could plant first (a symlink to elsewhere) is used; mv -T renames onto a name and never
# follows a symlink there into a directory.
install_tree() { # TARBALL DIR
  local parent
  if [[ -e "$2" && ! -f "$2/$INSTALL_MARKER" ]] && [[ ! -d "$2" || -n "$(ls -A -- "$2")" ]]; then
    die "--prefix $2 exists and holds something else than a Python install.sh made: choose a new or empty directory; nothing installed"
  fi
  parent="${2%/}"
  if [[ "$parent" == */* ]]; then parent="${parent%/*}"; else parent="."; fi
  parent="${parent:-/}"
  mkdir -p -- "$parent" || die "cannot create $parent; nothing installed"
  staging=$(mktemp -d "$parent/.install.sh.XXXXXX") || die "cannot write in $parent; nothing installed"
  mkdir -- "$staging/new" || die "cannot write in $parent; nothing installed"
  tar -xzf "$1" -C "$staging/new" --strip-components=1 || die "cannot unpack ${1##*/} into $parent; nothing installed"
  printf '%s build %s from %s\n' "$version" "$build" "$base_url" >"$staging/new/$INSTALL_MARKER"
  chmod 755 "$staging/new"
  if [[ -f "$2/$INSTALL_MARKER" ]]; then
    say "replacing the earlier install at $2 ($(earlier_install "$2")): it goes whole, with anything added to it since (packages installed into its site-packages, other files)"
  fi
  if [[ -e "$2" || -L "$2" ]]; then
    mv -T -- "$2" "$staging/old" || die "cannot move the earlier $2 aside; nothing installed"
  fi
  if ! mv -T -- "$staging/new" "$2"; then
    if [[ -e "$staging/old" ]] && ! mv -T -- "$staging/old" "$2"; then
      local aside="$staging"
      rm -rf -- "$staging/new"
      staging="" # not removed on exit: it holds the earlier install
      die "cannot put the new tree at $2 nor the earlier one back: the earlier one is at $aside/old"
    fi
    die "cannot put the new tree at $2; nothing installed"
  fi
  rm -rf -- "$staging"
}

# What an earlier install's marker says ("3.13.5 build 2 from <url>"): its first line, printable
# characters only (the directory is the user's, so its marker could say anything).
earlier_install() { # DIR
  local line
  line=$(head -c 400 -- "$1/$INSTALL_MARKER" | head -n 1 | LC_ALL=C tr -cd '[:alnum:][:punct:] ') || true
  printf '%s' "${line:-an install.sh install}"
}

# The modules whose C extensions link a library of the system, not of the tarball (tkinter
# aside: servers rarely have Tk); uuid's is _uuid (uuid itself imports without it). The check
# prints one line: the marker, then each module that does not import, with why.
MODULE_CHECK_MARK="install.sh-module-check:"
MODULE_CHECK='import importlib
failed = []
for name in ("ssl", "sqlite3", "readline", "curses", "dbm.gnu", "lzma", "bz2", "zlib", "ctypes", "_uuid"):
    try:
        importlib.import_module(name)
    except Exception as error:
        why = (str(error).splitlines() or [type(error).__name__])[0]
        failed.append("%s (%s)" % (name.lstrip("_"), why))
print("'"$MODULE_CHECK_MARK"'" + "; ".join(failed))'

# The runtime packages of PLATFORM baked in at publishing, space-separated; none if not baked.
runtime_packages() { # PLATFORM
  local entry
  [[ "$RUNTIME_PACKAGES" != "@RUNTIME_PACKAGES@" ]] || return 0
  for entry in $RUNTIME_PACKAGES; do
    if [[ "${entry%%=*}" == "$1" ]]; then
      printf '%s' "${entry#*=}" | tr ',' ' '
      return 0
    fi
  done
}

# After a --prefix install: the tarball links the system's libraries (OpenSSL, SQLite, ...), so
# run its python3 once and, if a module cannot be imported, say which and how to install what
# this platform needs. A warning: the install itself stands.
check_linked_modules() { # DIR
  local out="" packages command
  out=$("$1/bin/python3" -I -B -c "$MODULE_CHECK" </dev/null 2>/dev/null | LC_ALL=C tr -cd '[:print:]\n' | grep -F "$MODULE_CHECK_MARK" | tail -n 1) || true
  if [[ "$out" == "$MODULE_CHECK_MARK" ]]; then
    return 0
  elif [[ -z "$out" ]]; then
    say "warning: could not run $1/bin/python3 to check that the modules which need system libraries (OpenSSL, SQLite, ...) import"
  else
    say "warning: Python $version in $1 cannot import ${out#"$MODULE_CHECK_MARK"}: the tarball uses this system's libraries (OpenSSL, SQLite, readline, ncurses, gdbm, ...), and some are not installed"
  fi
  packages=$(runtime_packages "$platform")
  if [[ -z "$packages" ]]; then
    say "the packages $platform needs are listed in $base_url/${key%/*}/manifest.json (platform.runtime_dependencies)"
    return 0
  fi
  case "$platform" in
    debian-* | ubuntu-*) command="apt-get install -y" ;;
    opensuse-*) command="zypper install -y" ;;
    *) command="dnf install -y" ;;
  esac
  say "install what $platform needs, as root: $command $packages"
}

# --- main -------------------------------------------------------------------------------

platform=$(detect_platform)
arch=$(detect_arch)
workdir=$(mktemp -d)
staging=""
trust_note=""
trap 'rm -rf "$workdir" ${staging:+"$staging"}' EXIT
pin_keys
# Over plain http to another machine, anyone on the way could swap the catalog and the
# artifacts with their sha256s: only a signature check makes them trustworthy.
if [[ "$base_url" == http://* ]] && ! loopback_url "$base_url"; then
  ((signed)) || die "refusing $base_url: plain http without a signing key. Use https, or pin the store's key with --pubkey"
  # The baked key came over that same plain http, with this script: whoever could swap the
  # catalog on the way could have swapped the script too. Said on the success line.
  if ((${#pubkeys[@]} == 0)); then
    trust_note=" (signatures checked with the key that came with install.sh itself, over plain http: pin it with --pubkey SHA256:<hex> from a copy of install.sh you checked to make the check independent of the transport)"
  fi
fi

fetch "$base_url/versions.json" "$workdir/versions.json"
if ((signed)); then
  # A CDN may serve a fresh versions.json with a stale .sig for its cache time.
  verify_signed "$workdir/versions.json" "$base_url/versions.json" versions.json \
    " (if the store was updated in the last minutes, retry later)"
fi
json_flatten <"$workdir/versions.json" >"$workdir/catalog.tsv"

# Versions newest first (python_versions keeps that order) that have a build for this cell.
# Each must be a release's version before it names anything (a file, a message, a choice); the
# catalog's keys are compared whole, as text.
mapfile -t all_versions < <(awk -F'\t' '$1 ~ /^python_versions\/[0-9]+$/ { print $2 }' "$workdir/catalog.tsv")
built_here=()
for v in "${all_versions[@]}"; do
  if [[ ! "$v" =~ ^3\.[0-9]+\.[0-9]+((a|b|rc)[0-9]+)?$ ]]; then
    die "$base_url/versions.json lists a malformed version $(printf '%q' "$v")"
  fi
  if awk -F'\t' -v key="builds/$v/$platform/$arch/build" '$1 == key { found = 1; exit } END { exit !found }' \
    "$workdir/catalog.tsv"; then
    built_here+=("$v")
  fi
done

if ((list_only)); then
  if ((${#built_here[@]} == 0)); then
    say "no builds for $platform/$arch yet"
  else
    printf '%s\n' "${built_here[@]}"
  fi
  exit 0
fi

if ((${#built_here[@]} == 0)); then
  die "nothing is built for $platform/$arch yet"
fi
# The newest release of a series built here (uv's choice): its newest final release, else
# its newest pre-release; of any series for "". built_here is newest first.
newest_of_series() {
  local series="$1" v prerelease=""
  for v in "${built_here[@]}"; do
    [[ -z "$series" || "$v" == "$series".* ]] || continue
    if [[ "$v" =~ ^[0-9.]+$ ]]; then
      echo "$v"
      return
    fi
    [[ -n "$prerelease" ]] || prerelease="$v"
  done
  echo "$prerelease"
}

if [[ -z "$version" ]]; then
  version=$(newest_of_series "")
elif [[ "$version" =~ ^3\.[0-9]+$ ]]; then
  series="$version"
  version=$(newest_of_series "$series")
  if [[ -z "$version" ]]; then
    if [[ " ${all_versions[*]} " == *" $series".* ]]; then
      die "no Python $series.x is built for $platform/$arch (built for it: ${built_here[*]})"
    fi
    die "no Python $series.x is published (published: ${all_versions[*]:-none})"
  fi
  say "Python $series: the newest built for $platform/$arch is $version"
elif [[ " ${all_versions[*]} " != *" $version "* ]]; then
  die "unknown version $version (published: ${all_versions[*]:-none})"
elif [[ " ${built_here[*]} " != *" $version "* ]]; then
  die "Python $version is not built for $platform/$arch (built for it: ${built_here[*]})"
fi

cell="builds/$version/$platform/$arch"
field() { awk -F'\t' -v k="$cell/$1" '$1 == k { print $2; exit }' "$workdir/catalog.tsv"; }
build=$(field build)

# --build N: versions.json lists the newest build of the cell, so N may be that one (installed
# as without --build) or an earlier one (earlier=1), whose files are still in the store but whose
# artifact and sha256 only its own SHA256SUMS names.
earlier=0
if [[ -n "$build_wanted" ]]; then
  if [[ ! "$build" =~ $BUILD_NUMBER ]]; then
    die "versions.json lists a malformed build $(printf '%q' "$build") for $version on $platform/$arch; nothing installed"
  fi
  if ((build_wanted > build)); then
    die "build $build_wanted of $version for $platform/$arch is not published: versions.json lists build $build as its newest; nothing installed"
  fi
  if ((build_wanted < build)); then
    earlier=1
    say "build $build_wanted of $version for $platform/$arch is an earlier build than the newest (build $build): its sha256 comes from its own SHA256SUMS"
    build="$build_wanted"
  fi
fi

if ((prefix_given)); then
  want_type=tarball
else
  case "$platform" in debian-* | ubuntu-*) want_type=deb ;; *) want_type=rpm ;; esac
  if [[ $(id -u) -ne 0 ]]; then
    die "installing the $want_type package needs root: rerun with sudo, or pass --prefix DIR to install the tarball without root"
  fi
fi

if ((earlier)); then
  build_dir="$cell/$build"
else
  # The artifact of the wanted type: its key and sha256 on one line.
  read -r key sha256 < <(awk -F'\t' -v prefix="$cell/artifacts/" -v want="$want_type" '
    index($1, prefix) == 1 {
      split(substr($1, length(prefix) + 1), part, "/"); value[part[1], part[2]] = $2; if (part[1] + 1 > n) n = part[1] + 1
    }
    END { for (i = 0; i < n; i++) if (value[i, "type"] == want) { print value[i, "key"], value[i, "sha256"]; exit } }
  ' "$workdir/catalog.tsv") || true
  [[ -n "${key:-}" ]] || die "build $build of $version for $platform/$arch has no $want_type artifact"
  [[ "$key" =~ ^builds/[A-Za-z0-9._/+-]+$ && "$key" != *..* ]] || die "refusing suspicious artifact key '$key'"
  [[ "$sha256" =~ ^[0-9a-f]{64}$ ]] || die "versions.json has no valid sha256 for $key"
  build_dir="${key%/*}"
fi

# The build's SHA256SUMS, signed when it was published: with a key pinned, nothing in it is
# trusted before its signature is verified. It must vouch for the sha256 versions.json lists; for
# an earlier build it is where the sha256 comes from, so it is read with no key pinned too.
sums="$build_dir/SHA256SUMS"
if ((signed || earlier)); then
  if ((earlier)); then
    missing="build $build of $version for $platform/$arch is not in the store, or has no SHA256SUMS ($sums: download failed); nothing installed"
  else
    missing="$sums: download failed (a build published before signing has none); nothing installed"
  fi
  fetch "$base_url/$sums" "$workdir/SHA256SUMS" "$missing"
  if ((signed)); then
    verify_signed "$workdir/SHA256SUMS" "$base_url/$sums" "$sums"
  fi
fi

if ((earlier)); then
  # The artifact of the wanted type is the one file SHA256SUMS lists under that type's name, as
  # the builder names it: python-<version>-<platform>-<arch>.tar.gz, python-<version>_<build>_<deb
  # arch>.deb, python-<version>-<build>.<arch>.rpm (any middle part, but exactly one such file).
  case "$want_type" in
    tarball) starts="python-$version-$platform-$arch.tar.gz" ends="" exact=1 ;;
    deb)
      case "$arch" in x86_64) ends="_amd64.deb" ;; *) ends="_arm64.deb" ;; esac
      starts="python-${version}_" exact=0 ;;
    rpm) starts="python-$version-" ends=".$arch.rpm" exact=0 ;;
  esac
  shape="$starts"
  ((exact)) || shape="$starts*$ends"
  mapfile -t found < <(awk -v starts="$starts" -v ends="$ends" -v exact="$exact" '
    NF == 2 {
      n = $2; sub(/^\*/, "", n); s = length(starts); e = length(ends)
      if (substr(n, 1, s) != starts || substr(n, length(n) - e + 1) != ends) next
      if (exact ? length(n) == s : length(n) > s + e) print $1, n
    }
  ' "$workdir/SHA256SUMS")
  ((${#found[@]} > 0)) || die "build $build of $version for $platform/$arch has no $want_type: $sums lists no $shape; nothing installed"
  ((${#found[@]} == 1)) || die "build $build of $version for $platform/$arch: $sums lists ${#found[@]} files named $shape, not one; nothing installed"
  read -r sha256 name <<<"${found[0]}"
  # A file name of a build directory (layout.FILE_NAME_PATTERN), its characters listed.
  file_name='^[ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789][ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-]{0,199}$'
  [[ "$name" =~ $file_name ]] || die "$sums lists a suspicious file name $(printf '%q' "$name"); nothing installed"
  [[ "$sha256" =~ ^[0123456789abcdef]{64}$ ]] || die "$sums has no valid sha256 for $name; nothing installed"
  key="$build_dir/$name"
  trusted="the signed $sums"
  unsigned_trusted="$sums"
else
  name="${key##*/}"
  if ((signed)); then
    listed=$(awk -v name="$name" '{ n = $2; sub(/^\*/, "", n) } n == name { print $1; exit }' "$workdir/SHA256SUMS")
    [[ -n "$listed" ]] || die "$sums does not list $name; nothing installed"
    [[ "$listed" == "$sha256" ]] ||
      die "$name: versions.json says sha256 $sha256 but the signed $sums says $listed; nothing installed"
  fi
  trusted="versions.json and the signed SHA256SUMS"
  unsigned_trusted="versions.json"
fi

file="$workdir/$name"
say "downloading Python $version build $build for $platform/$arch ($want_type)"
fetch "$base_url/$key" "$file"
actual=$(sha256sum "$file" | cut -d' ' -f1)
if [[ "$actual" != "$sha256" ]]; then
  die "checksum mismatch for $name: expected $sha256, got $actual; not installing"
fi
if ((signed)); then
  say "sha256 verified (against $trusted)"
else
  say "sha256 verified"
  if ((skip_signatures)); then
    say "signatures not checked: --skip-signatures (the sha256s in $unsigned_trusted alone are trusted)"
  else
    say "signatures not checked: no signing key is pinned (pass --pubkey FILE|SHA256:<hex>)"
  fi
fi

# --build names one build: the package manager may replace a newer one of the version with it.
installed="Python $version"
downgrade=()
if [[ -n "$build_wanted" ]]; then
  installed="Python $version build $build"
  case "$want_type" in
    deb) downgrade=(--allow-downgrades) ;;
    rpm) downgrade=(--oldpackage) ;; # zypper's; dnf installs the file's own version anyway
  esac
fi
case "$want_type" in
  tarball)
    install_tree "$file" "$prefix"
    say "installed $installed into $prefix: run $prefix/bin/python3$trust_note"
    check_linked_modules "$prefix"
    ;;
  deb)
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${downgrade[@]}" "$file" >&2
    say "installed $installed: /opt/python/$version/bin/python3$trust_note"
    ;;
  rpm)
    if command -v dnf >/dev/null 2>&1; then
      dnf install -y "$file" >&2
    elif command -v zypper >/dev/null 2>&1; then
      zypper --non-interactive install --allow-unsigned-rpm "${downgrade[@]}" "$file" >&2
    else
      yum install -y "$file" >&2
    fi
    say "installed $installed: /opt/python/$version/bin/python3$trust_note"
    ;;
esac
