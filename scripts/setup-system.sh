#!/usr/bin/env bash
# System packages the test suite and the real-component tests need (Debian 12).
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail
pkgs=(slurm-wlm slurm-wlm-torque munge openssh-server openssh-client shellcheck zsh fish tmux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup-system: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # wait for another apt/dpkg (e.g. a concurrent test run) instead of failing
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup-system: ok (${pkgs[*]})"
