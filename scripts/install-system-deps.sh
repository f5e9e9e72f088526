#!/usr/bin/env bash
# Install the Debian packages a group of features needs, only when missing.
#   egl      headless 3D: VTK falls back to EGL with these (never set VTK_DEFAULT_OPENGL_WINDOW="")
#   browser  headless Debian chromium for the browser tests (never `playwright install`)
set -euo pipefail

declare -A GROUPS_PKGS=(
  [egl]="libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libxrender1 libxext6 libx11-6"
  [browser]="chromium fonts-dejavu-core"
)

want=()
for group in "$@"; do
  [[ -n "${GROUPS_PKGS[$group]:-}" ]] || { echo "unknown dependency group: $group" >&2; exit 2; }
  read -r -a pkgs <<< "${GROUPS_PKGS[$group]}"
  want+=("${pkgs[@]}")
done

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "missing system packages (${missing[*]}) and no apt-get to install them; install them by hand" >&2
  exit 1
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "need root to install: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2; exit 1
  fi
fi
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
