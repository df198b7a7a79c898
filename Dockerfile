# syntax=docker/dockerfile:1
# customer-sync: small, non-root, pinned base. Kubernetes probes replace HEALTHCHECK.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first, in their own layer: they change less often than the code.
COPY pyproject.toml README.md ./
RUN mkdir service && touch service/__init__.py \
    && pip install . \
    && pip uninstall -y customer-sync
COPY service ./service
RUN pip install --no-deps .

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --no-create-home customer-sync
COPY --from=build /opt/venv /opt/venv
USER 10001
EXPOSE 8080
HEALTHCHECK NONE
ENTRYPOINT ["customer-sync"]
CMD ["run"]
