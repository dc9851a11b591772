# The login dataflow: one image for the Bytewax job, the generator and the dead-letter tool.
# Build: docker build -t login-dataflow .   (docker-compose.yml builds it for you)
#
# bookworm: glibc 2.36 covers every wheel in requirements.txt (bytewax 0.21.1 needs
# manylinux_2_31, confluent-kafka 2.16.1 manylinux_2_28), so nothing is compiled and the
# image needs no compiler.
FROM python:3.11.17-slim-bookworm

LABEL org.opencontainers.image.title="login-dataflow" \
      org.opencontainers.image.description="Bytewax streaming job for login events on Apache Kafka"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid/gid, so files in volumes have the same owner on every build.
ARG APP_UID=10001
# /app itself is the app user's: with BYTEWAX_DATAFLOW_API_ENABLED, bytewax.run writes
# dataflow.json into its working directory. The source inside stays root's, read-only.
RUN groupadd --system --gid "${APP_UID}" app \
 && useradd --system --uid "${APP_UID}" --gid app --home-dir /app --no-create-home app \
 && mkdir -p /app /data/recovery \
 && chown app:app /app \
 && chown -R app:app /data

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when requirements.txt changes.
# The production pins only; the test tools (requirements-dev.txt) stay out of the image.
COPY requirements.txt ./
RUN pip install --no-cache-dir --only-binary=:all: -r requirements.txt

# The source last, so a code change rebuilds only this layer. Root's files, read-only
# for the app user.
COPY dataflow/ ./dataflow/
# Compiled to bytecode here, once: with PYTHONDONTWRITEBYTECODE and a source the app user
# cannot write, every process start (each worker process, each restart) would otherwise
# compile the whole package again: about 35 ms more to import the job (measured).
RUN python -m compileall -q dataflow

USER app

# Bytewax's dataflow API (/metrics, /dataflow) when BYTEWAX_DATAFLOW_API_ENABLED=true.
EXPOSE 3030
# Recovery partitions live under /data/recovery (a named volume in docker-compose.yml);
# a fresh volume takes the directory's owner (app) from the image.

CMD ["python", "-m", "dataflow.worker", "dataflow.flow"]
