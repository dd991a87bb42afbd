#!/usr/bin/env bash
# Set-up shared by run_demo.sh and test.sh: a virtual environment with requirements.txt in .venv/, Fashion-MNIST
# from Debian's dataset-fashion-mnist package and the espeak-ng speech synthesiser (the offline spoken-commands
# set) when they can be installed.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
missing=()
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 \
      || echo "note: could not install ${missing[*]}; Fashion-MNIST will be looked for in data/"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    (sudo apt-get update -qq && sudo apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 || true
  else
    echo "note: run 'apt-get install ${missing[*]}' as root (or put Fashion-MNIST under data/FashionMNIST/raw/)"
  fi
fi
