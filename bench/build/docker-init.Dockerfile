# The single-stage Dockerfile `docker init` writes for a Python project, given the same
# locked requirements as the generated one: the yardstick for the generated image's size.
# Differences, all needed to serve the same project: useradd (Debian's minimal images
# have no adduser), the requirements folder, the PyTorch CPU index, and the command.
ARG PYTHON_IMAGE=python:3.13-slim
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1
ENV PYTHONUNBUFFERED=1
WORKDIR /app
ARG UID=10001
RUN useradd --no-create-home --home-dir /nonexistent --shell /sbin/nologin --uid "${UID}" appuser
# PyTorch CPU renders: https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX_URL=
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=requirements,target=requirements \
    for layer in ml serving; do \
        python -m pip install --require-hashes --no-deps \
            ${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"} -r "requirements/$layer.lock" \
        || exit 1; done
USER appuser
COPY . .
ARG PACKAGE
ENV PYTHONPATH=/app/src MODEL_DIR=/app/model PACKAGE=${PACKAGE}
EXPOSE 8000
CMD gunicorn --config "python:${PACKAGE}.gunicorn_conf" "${PACKAGE}.app:create_app()"
