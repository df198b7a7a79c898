# syntax=docker/dockerfile:1
# customer-sync: small, non-root, pinned base; Kubernetes probes (/healthz, /readyz) replace HEALTHCHECK.
# Configuration and credentials come from the environment at run time: nothing secret is baked in.

# ---- build: a virtualenv with the dependencies, then the package -------------------------------
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, in their own layer: they change far less often than the code. A stub
# package lets pip resolve pyproject's pinned ranges without the sources.
COPY pyproject.toml README.md ./
RUN mkdir service \
    && touch service/__init__.py \
    && pip install --no-cache-dir . \
    && pip uninstall --yes customer-sync
COPY service ./service
RUN pip install --no-cache-dir --no-deps . \
    && python -m compileall -q /opt/venv/lib

# ---- runtime: the virtualenv only, no compilers, no pip cache, no sources ----------------------
FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="customer-sync" \
      org.opencontainers.image.description="Kafka CDC to Gameball Batch Customer API sink" \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode is compiled at build time: the root filesystem is read-only at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 customer-sync \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin customer-sync
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
HEALTHCHECK NONE
ENTRYPOINT ["customer-sync"]
CMD ["run"]
