#!/usr/bin/env bash
# Installs every Debian 12 package that miclip's build, tests, reference checks and the
# local Slurm test need. Idempotent: packages already present are skipped by apt.
# Usage: scripts/install-deps.sh   (as root, or with sudo available)
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config git clang-14 libclang-rt-14-dev
  # the stack
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools libscalapack-openmpi-dev
  libopenblas-dev libyaml-dev libjansson-dev libgsl-dev libutf8proc-dev
  libjpeg62-turbo-dev libstb-dev libssl-dev
  # figures (src/plot: cairo + pango, the DejaVu font; pdftotext for the tests)
  libcairo2-dev libpango1.0-dev fonts-dejavu-core poppler-utils
  # reference checks (run with /usr/bin/python3)
  python3 python3-numpy python3-torch python3-torchvision python3-scipy
  python3-h5py-mpi python3-sklearn python3-pil python3-yaml python3-regex
  # local Slurm cluster for the Slurm tests
  slurmctld slurmd slurm-client munge
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
