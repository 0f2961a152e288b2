#!/usr/bin/env bash
# Installs the Debian packages KernelQuant builds against. Idempotent; needs root
# (or sudo). Usage: scripts/install-deps.sh
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config
  nlohmann-json3-dev   # JSON (safetensors headers, config.json, --json output)
  libcli11-dev         # command-line parsing
  libfmt-dev           # formatting
  libpcre2-dev         # GPT-2 pre-tokenizer regex with Unicode classes
  libutf8proc-dev      # Unicode normalization (tokenizer.json NFC / NFKC normalizers, Qwen2)
  libdnnl-dev          # oneDNN: FP32 GEMM baseline
  libxxhash-dev        # XXH3-64 checksums of kq folders (used header-only)
  libgtest-dev libgmock-dev libbenchmark-dev
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "dependencies: ok"
