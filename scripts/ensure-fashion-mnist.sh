#!/usr/bin/env bash
# Installs Debian's dataset-fashion-mnist (the embedded real dataset) when it is missing.
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
[ -f "$dir/train-images-idx3-ubyte.gz" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian package dataset-fashion-mnist (Fashion-MNIST idx files) ..."
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1) || (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)
else
  echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (files go to $dir)" >&2
  exit 2
fi
