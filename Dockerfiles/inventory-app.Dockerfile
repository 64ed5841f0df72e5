# syntax=docker/dockerfile:1
# inventory-app: the movie inventory API (Flask, gunicorn).
# Build from the repository root: docker build -f Dockerfiles/inventory-app.Dockerfile .
# checkov:skip=CKV_DOCKER_2: Kubernetes' probes (base/) check the service; the kubelet ignores HEALTHCHECK

FROM python:3.11.15-slim-trixie AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements/lock.txt /src/requirements/lock.txt
COPY devtools/gitops/lockfile.py /src/lockfile.py
COPY apps/common /src/apps/common
COPY apps/inventory-app /src/apps/inventory-app
# Our two packages become wheels, offline, built by the locked setuptools (hash-checked).
RUN python3 /src/lockfile.py /src/requirements/lock.txt setuptools > /src/build.txt \
    && python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r /src/build.txt \
    && /opt/build/bin/pip wheel --no-deps --no-index --no-build-isolation --wheel-dir /src/wheels \
      /src/apps/common /src/apps/inventory-app
# Exactly the locked packages the service needs, each file checked against its hashes (wheels
# only: nothing is compiled), then our wheels, then pip's check that nothing is missing.
RUN python3 /src/lockfile.py /src/requirements/lock.txt /src/apps/inventory-app > /src/runtime.txt \
    && python -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --require-hashes --no-deps --only-binary=:all: \
      -r /src/runtime.txt \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps --no-index /src/wheels/*.whl \
    && /opt/build/bin/pip --python /opt/venv/bin/python check

FROM python:3.11.15-slim-trixie
LABEL org.opencontainers.image.title="inventory-app" \
      org.opencontainers.image.source="https://github.com/moviestream-platform/moviestream"
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8080
# pip and setuptools are not needed at run time.
RUN rm -rf /usr/local/lib/python3.11/site-packages/pip* /usr/local/lib/python3.11/site-packages/setuptools* \
      /usr/local/bin/pip* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
CMD ["gunicorn", "--config", "python:moviestream_common.gunicorn_config", "inventory_app:create_app()"]
