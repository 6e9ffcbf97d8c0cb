#!/usr/bin/env bash
# Installs the Debian 12 packages miclip needs. Idempotent: packages already present are
# skipped by apt.
#   scripts/install-deps.sh --run   what building and running miclip needs (the main job,
#                                   scripts/world.sh): compiler, CMake, Open MPI, parallel HDF5,
#                                   the libraries it links
#   scripts/install-deps.sh         all of it: also clang for the sanitizer and fuzz build,
#                                   PyTorch and friends for the reference checks, and a local
#                                   Slurm cluster for the Slurm tests (scripts/test.sh)
# As root, or with sudo available.
set -euo pipefail

run_packages=(
  # build
  build-essential cmake pkg-config git
  # the stack
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev libscalapack-openmpi-dev
  libopenblas-dev libyaml-dev libjansson-dev libgsl-dev libutf8proc-dev
  libjpeg62-turbo-dev libstb-dev libssl-dev
  # figures (src/plot: cairo + pango, the DejaVu font)
  libcairo2-dev libpango1.0-dev fonts-dejavu-core
)
test_packages=(
  # sanitizer + libFuzzer build
  clang-14 libclang-rt-14-dev
  # the tree-wide C format check (style_format)
  clang-format-14
  # h5dump etc. for store checks; pdftotext for the figure tests
  hdf5-tools poppler-utils
  # reference checks (run with /usr/bin/python3)
  python3 python3-numpy python3-torch python3-torchvision python3-scipy
  python3-h5py-mpi python3-sklearn python3-pil python3-yaml python3-regex
  # headless browser for the report site's test (report_site: console errors, screenshots)
  chromium
  # local Slurm cluster for the Slurm tests
  slurmctld slurmd slurm-client munge
)

case "${1:-}" in
  --run) packages=("${run_packages[@]}"); what="run" ;;
  "" | --all) packages=("${run_packages[@]}" "${test_packages[@]}"); what="all" ;;
  *) echo "usage: scripts/install-deps.sh [--run|--all]" >&2; exit 2 ;;
esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps ($what): all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps ($what): installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
