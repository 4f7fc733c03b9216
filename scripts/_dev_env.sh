# shellcheck shell=bash
# Sourced by scripts/serve and scripts/picam-api (after _venv.sh, which sets
# $root): the development server's data dir and camera, so that the command
# line acts on the same users and photos as the server it belongs to.
export PICAM_DATA_DIR=${PICAM_DATA_DIR:-$root/var}
export PICAM_CAMERA_BACKEND=${PICAM_CAMERA_BACKEND:-mock}
