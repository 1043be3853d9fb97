# findbox serve in a container, on an NVIDIA GPU (or the CPU).
#
#   docker build -t findbox .
#   docker run --gpus all -p 5004:5004 -v /path/to/models:/models:ro --stop-timeout 130 findbox
#
# The models are not in the image: mount a folder at /models holding detector.pt (ultralytics),
# scorer/ (a save_pretrained folder) and upscaler.pth (Real-ESRGAN), or override the command
# (see docs/OPERATIONS.md). Nothing is downloaded at run time.
#
# Base: Debian bookworm with Python 3.11, what findbox is developed and tested on. PyPI's torch
# wheels for Linux carry their own CUDA and cuDNN libraries, so a CUDA base image would only add
# a second copy; the host's NVIDIA driver comes in through the NVIDIA Container Toolkit
# (`--gpus all`), asked for by the two NVIDIA_ variables below.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    FINDBOX_CACHE=/home/findbox/.cache/findbox

# curl for HEALTHCHECK; libGL and glib for the OpenCV that ultralytics pulls in
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/findbox
# torch first, pinned as in the Makefile: its layer is large and changes least
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install torch==2.14.1 torchvision==0.29.1 . \
    && useradd --create-home --uid 1000 findbox \
    && mkdir -p /models

USER findbox
EXPOSE 5004
# Loading large models and the warm-up request take a while: 5 minutes before a failure counts.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD curl -fsS http://127.0.0.1:5004/health || exit 1
# On SIGTERM (docker stop) the server stops accepting, finishes in-flight requests (up to the
# request timeout + 5 s), then exits: give docker stop at least that long (--stop-timeout 130).
STOPSIGNAL SIGTERM
CMD ["findbox", "serve", "--host", "0.0.0.0", "--port", "5004", \
     "--detector", "/models/detector.pt", "--scorer", "/models/scorer", "--upscaler", "/models/upscaler.pth"]
