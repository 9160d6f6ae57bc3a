# dlcli in a container, on the official TensorFlow images (their TF matches pyproject's range).
#   CPU: docker build -t dlcli .
#   GPU: docker build --build-arg BASE=tensorflow/tensorflow:2.21.0-gpu -t dlcli:gpu .
ARG BASE=tensorflow/tensorflow:2.21.0
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    TFDS_DATA_DIR=/data/tensorflow_datasets \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/dlcli
COPY pyproject.toml README.md ./
COPY dlcli ./dlcli
COPY recipes ./recipes
# The base image's TensorFlow satisfies the requirement, so pip keeps it (CPU or GPU build).
RUN pip install .

RUN useradd --create-home --uid 1000 dlcli && mkdir -p /runs /data && chown dlcli /runs /data
USER dlcli
WORKDIR /runs
VOLUME ["/runs", "/data"]
ENTRYPOINT ["dlcli"]
CMD ["--help"]
