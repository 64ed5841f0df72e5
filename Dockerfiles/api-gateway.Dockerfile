# syntax=docker/dockerfile:1
# api-gateway: the API gateway (aiohttp on uvloop, under gunicorn).
# Build from the repository root: docker build -f Dockerfiles/api-gateway.Dockerfile .

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv --without-pip /opt/venv
COPY requirements/constraints.txt /src/requirements/constraints.txt
COPY apps/common /src/apps/common
COPY apps/api-gateway /src/apps/api-gateway
# Wheels only (psycopg's binary wheel carries libpq): no compiler, nothing built but our code.
RUN pip --python /opt/venv/bin/python install --only-binary=:all: \
      --constraint /src/requirements/constraints.txt \
      /src/apps/common /src/apps/api-gateway

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="api-gateway" \
      org.opencontainers.image.source="https://github.com/moviestream-platform/moviestream"
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=3000
# pip and setuptools are not needed at run time.
RUN rm -rf /usr/local/lib/python3.11/site-packages/pip* /usr/local/lib/python3.11/site-packages/setuptools* \
      /usr/local/bin/pip* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 3000
CMD ["gunicorn", "--config", "python:moviestream_common.gunicorn_config", "--worker-class", "aiohttp.GunicornUVLoopWebWorker", "api_gateway:serve"]
