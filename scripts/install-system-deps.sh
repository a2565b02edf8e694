#!/usr/bin/env bash
# Installs the system packages the tests need: Debian's chromium (Playwright's browser and the
# SwiftShader Vulkan ICD) and mesa-vulkan-drivers 25 from bookworm-backports (lavapipe; bookworm's own
# 22.3 is refused by Dawn). Runs only as root on Debian; anywhere else it says what to install and fails.
# With --torch it also installs Debian's python3-torch, OpenBLAS and matplotlib (for train/, never needed by CI).
set -euo pipefail

want_torch=0
[ "${1:-}" = "--torch" ] && want_torch=1

need_manual() {
  cat >&2 <<'TXT'
ttt-web: the tests need these system packages, and this script installs them only as root on Debian 12:
  - chromium                (Debian's; provides /usr/bin/chromium and /usr/lib/chromium/vk_swiftshader_icd.json)
  - mesa-vulkan-drivers >= 25 (lavapipe; on Debian 12 from bookworm-backports:
        apt-get install -t bookworm-backports mesa-vulkan-drivers)
  - libvulkan1
Install them by hand (or run this as root on Debian), then run the tests again.
TXT
  exit 1
}

have_all() {
  [ -x /usr/bin/chromium ] || return 1
  [ -f /usr/lib/chromium/vk_swiftshader_icd.json ] || return 1
  [ -f /usr/share/vulkan/icd.d/lvp_icd.json ] || return 1
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  case "$v" in 2[5-9].*|[3-9][0-9].*) ;; *) return 1 ;; esac
  if [ "$want_torch" = 1 ]; then
    /usr/bin/python3 -c 'import torch, matplotlib' 2>/dev/null || return 1
  fi
  return 0
}

if have_all; then exit 0; fi

if [ "$(id -u)" != 0 ] || [ ! -f /etc/debian_version ]; then need_manual; fi
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ "$codename" = bookworm ] || need_manual

export DEBIAN_FRONTEND=noninteractive
bp=/etc/apt/sources.list.d/ttt-web-bookworm-backports.sources
if [ ! -f "$bp" ]; then
  cat > "$bp" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
echo "ttt-web: installing system packages (chromium, mesa-vulkan-drivers from bookworm-backports)" >&2
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium libvulkan1 fonts-dejavu-core >/dev/null
apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers >/dev/null
if [ "$want_torch" = 1 ]; then
  apt-get install -y -qq --no-install-recommends python3-torch libopenblas0-pthread python3-numpy python3-matplotlib >/dev/null
fi
have_all || { echo "ttt-web: system packages still missing after install" >&2; need_manual; }
echo "ttt-web: system packages ready" >&2
