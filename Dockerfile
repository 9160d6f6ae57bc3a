# dlcli in a container, on the official TensorFlow images (their TF matches pyproject's range).
#   CPU: docker build -t dlcli .
#   GPU: docker build --build-arg BASE=tensorflow/tensorflow:2.21.0-gpu -t dlcli:gpu .   (docker run --gpus all ...)
#   Extras: --build-arg EXTRAS=tune,serve,export adds LiteRT/ONNX/OpenVINO exports (about 300 MB more);
#   the default, tune,serve, is what `dlcli tune`, Vertex AI's hyperparameter tuning trials and
#   `dlcli serve` (Vertex AI's custom prediction containers: docker run -p 8080:8080 ... dlcli serve /runs/NAME) need.
ARG BASE=tensorflow/tensorflow:2.21.0
FROM ${BASE}
ARG EXTRAS=tune,serve

# DLCLI_RUNS: default run folders go to /runs/RECIPE-TIMESTAMP (the volume), not /runs/runs/...
# DLCLI_CONTAINER: dlcli writes the mounted /runs as its owner (dlcli/runs/container.py).
# TensorFlow's C++ start-up lines are kept out by dlcli itself; DLCLI_DEBUG=1 shows them.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    TFDS_DATA_DIR=/data/tensorflow_datasets \
    DLCLI_RUNS=/runs \
    DLCLI_CONTAINER=1

WORKDIR /opt/dlcli
COPY pyproject.toml README.md ./
COPY dlcli ./dlcli
COPY recipes ./recipes
# The base image's TensorFlow satisfies the requirement, so pip keeps it (CPU or GPU build).
RUN pip install ".[${EXTRAS}]"

# The image starts as root only for dlcli to take on the owner of the mounted /runs (or /data)
# before anything else runs: a host folder is then written as the host user who owns it. With
# no volume mounted it runs as the user dlcli (uid 1000); `docker run --user UID:GID` is honoured.
RUN useradd --create-home --uid 1000 dlcli && mkdir -p /runs /data && chown dlcli:dlcli /runs /data
WORKDIR /runs
VOLUME ["/runs", "/data"]
ENTRYPOINT ["dlcli"]
CMD ["--help"]
