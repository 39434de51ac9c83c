# The naive Dockerfile: the whole project first, then one install. Any change to any
# file re-runs the install.
ARG PYTHON_IMAGE=python:3.13-slim
FROM ${PYTHON_IMAGE}
WORKDIR /app
COPY . .
# PyTorch CPU renders: https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX_URL=
RUN for layer in ml serving; do \
        pip install --require-hashes --no-deps \
            ${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"} -r "requirements/$layer.lock" \
        || exit 1; done
ARG PACKAGE
ENV PYTHONPATH=/app/src MODEL_DIR=/app/model PACKAGE=${PACKAGE}
EXPOSE 8000
CMD gunicorn --config "python:${PACKAGE}.gunicorn_conf" "${PACKAGE}.app:create_app()"
