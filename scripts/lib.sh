# shellcheck shell=bash
# Shared helpers for scripts/run and scripts/test. Source it; it sets no
# shell options of its own.

# PACKDIR_ROOT is the repository root: the directory above scripts/.
PACKDIR_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
export PACKDIR_ROOT

# Go lives in /usr/local/go on the project's machines; a shell without a
# login profile (CI, sudo) may not have it on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH=/usr/local/go/bin:$PATH
	export PATH
fi

# log prints a line to stderr, marked as ours.
log() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
}

# as_root runs a command as root: directly when we are root, with sudo
# otherwise.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	else
		sudo "$@"
	fi
}

# pkg_installed reports whether the Debian package $1 is installed.
pkg_installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# _packdir_apt_updated is set once apt-get update has run in this shell.
_packdir_apt_updated=

# need_pkgs PKG... installs those of the Debian packages that are missing,
# with apt-get, running apt-get update at most once per shell. It does
# nothing, and needs no network, when all of them are installed.
need_pkgs() {
	local pkg missing=()
	for pkg in "$@"; do
		pkg_installed "$pkg" || missing+=("$pkg")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		return 0
	fi
	log "installing ${missing[*]}"
	if [ -z "$_packdir_apt_updated" ]; then
		_apt update || return
		_packdir_apt_updated=1
	fi
	# One retry: on a machine shared with other apt users, another
	# apt-get update can clean the downloaded .debs away before dpkg
	# unpacks them (Docker's apt config deletes the archive cache).
	_apt install -y --no-install-recommends "${missing[@]}" ||
		_apt install -y --no-install-recommends "${missing[@]}"
}

# _apt runs apt-get as root, non-interactively, waiting for another apt or
# dpkg that holds the lock instead of failing at once.
_apt() {
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get -q -o DPkg::Lock::Timeout=600 "$@" </dev/null
}

# build_packdir builds the packdir binary into bin/packdir.
build_packdir() {
	(cd -- "$PACKDIR_ROOT" && go build -o bin/packdir ./cmd/packdir)
}
