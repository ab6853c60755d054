#!/usr/bin/env bash
# Install the Debian packages the tests need, when their command is missing.
#
#   scripts/install-debian-packages.sh COMMAND=PACKAGE [COMMAND=PACKAGE ...]
#
# For each pair, nothing happens if COMMAND is already on PATH (or, for a
# package that puts no command on PATH, if COMMAND is an absolute path to a
# file it installs and that file exists). Otherwise the
# PACKAGE is installed with apt-get (one `apt-get update` for the whole run).
# As root, a failed install is an error. Without root or apt-get, a clear
# message is printed and the script exits 0: the tests that need the command
# skip locally, and fail under CI=true.
set -euo pipefail

missing_packages=()
for pair in "$@"; do
    command_name="${pair%%=*}"
    package_name="${pair#*=}"
    if [[ "$command_name" == /* ]]; then
        [ -e "$command_name" ] || missing_packages+=("$package_name")
    elif ! command -v "$command_name" >/dev/null 2>&1; then
        missing_packages+=("$package_name")
    fi
done

if [ "${#missing_packages[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "make install: missing Debian package(s): ${missing_packages[*]}" >&2
    echo "make install: not root or no apt-get, so not installing them. Run:" >&2
    echo "    sudo apt-get install -y ${missing_packages[*]}" >&2
    echo "make install: tests that need them are skipped (and fail when CI=true)." >&2
    exit 0
fi

echo "make install: installing Debian package(s): ${missing_packages[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing_packages[@]}"
