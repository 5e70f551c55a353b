# syntax=docker/dockerfile:1
# Worker image (CPU): `istream worker` on ONNX Runtime, no torch — the worker runs models from bundles.
# Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t interest-stream/worker:0.1.0 .
# Run it with a read-only root filesystem: state on /state, the model registry on /registry, /tmp on tmpfs.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The version the dev environment tests with; CPU package here, no CUDA libraries.
ARG ONNXRUNTIME_VERSION=1.31.1
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/istream/bin:$PATH
RUN python -m venv /opt/istream
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY deploy/docker/requirements.py deploy/docker/healthcheck.py deploy/docker/
# Dependencies first (cached while only the code changes), then the project without re-resolving them.
RUN python deploy/docker/requirements.py --onnxruntime cpu --version "${ONNXRUNTIME_VERSION}" > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt
COPY stream_app stream_app
COPY models models
COPY export export
RUN pip install --no-deps . \
 && cp deploy/docker/healthcheck.py /opt/istream/healthcheck.py \
 && istream worker --help > /dev/null \
 && ! python -c "import torch" 2>/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="interest-stream/worker" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="interest-stream worker (ONNX Runtime CPU)"
RUN groupadd --system --gid 10001 istream \
 && useradd --system --uid 10001 --gid istream --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin istream \
 && mkdir -p /state /registry \
 && chown istream:istream /state /registry
COPY --from=build /opt/istream /opt/istream
# HOME and every cache point at /tmp (tmpfs): the root filesystem stays read-only. Nothing is downloaded
# at run time: the encoder and its tokenizer come from the bundle.
ENV PATH=/opt/istream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
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
