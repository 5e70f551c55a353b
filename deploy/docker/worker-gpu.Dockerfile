# syntax=docker/dockerfile:1
# Worker image (GPU): `istream worker` on ONNX Runtime's CUDA execution provider, no torch.
# onnxruntime-gpu 1.31.1 from PyPI is built against CUDA 13.0 and cuDNN 9; the base image must match
# those major versions (change both together). Needs the NVIDIA container toolkit on the host.
# Build from the repository root:
#   docker build -f deploy/docker/worker-gpu.Dockerfile -t interest-stream/worker-gpu:0.1.0 .
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ARG ONNXRUNTIME_VERSION=1.31.1
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/istream/bin:$PATH DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/istream
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY deploy/docker/requirements.py deploy/docker/healthcheck.py deploy/docker/
RUN python deploy/docker/requirements.py --onnxruntime gpu --version "${ONNXRUNTIME_VERSION}" > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt
COPY stream_app stream_app
COPY models models
COPY export export
RUN pip install --no-deps . \
 && cp deploy/docker/healthcheck.py /opt/istream/healthcheck.py \
 && istream worker --help > /dev/null \
 && ! python -c "import torch" 2>/dev/null

FROM ${CUDA_IMAGE}
LABEL org.opencontainers.image.title="interest-stream/worker-gpu" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="interest-stream worker (ONNX Runtime CUDA)"
ENV DEBIAN_FRONTEND=noninteractive
# The venv's python is a link to the system interpreter, so the runtime stage needs python3 (not venv/pip).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 istream \
 && useradd --system --uid 10001 --gid istream --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin istream \
 && mkdir -p /state /registry \
 && chown istream:istream /state /registry
COPY --from=build /opt/istream /opt/istream
# ISTREAM_ORT_DEVICE=cuda: a GPU worker that cannot load CUDA stops with a clear error instead of
# quietly serving from the CPU.
ENV PATH=/opt/istream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    ISTREAM_ORT_DEVICE=cuda \
    ISTREAM_RUN_DIR=/tmp/istream \
    ISTREAM_WORKER_DATA_DIR=/state \
    ISTREAM_REGISTRY_DIR=/registry \
    ISTREAM_WORKER_WEB_PORT=6066
USER 10001:10001
WORKDIR /state
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=6s --start-period=180s --retries=4 CMD ["python", "/opt/istream/healthcheck.py"]
ENTRYPOINT ["istream"]
CMD ["worker"]
