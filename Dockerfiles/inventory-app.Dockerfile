# syntax=docker/dockerfile:1
# inventory-app: the movie inventory API (Flask, gunicorn).
# Build from the repository root: docker build -f Dockerfiles/inventory-app.Dockerfile .

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv --without-pip /opt/venv
COPY requirements/constraints.txt /src/requirements/constraints.txt
COPY apps/common /src/apps/common
COPY apps/inventory-app /src/apps/inventory-app
# Wheels only (psycopg's binary wheel carries libpq): no compiler, nothing built but our code.
RUN pip --python /opt/venv/bin/python install --only-binary=:all: \
      --constraint /src/requirements/constraints.txt \
      /src/apps/common /src/apps/inventory-app

FROM python:3.11.14-slim-bookworm
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
