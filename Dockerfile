# foxmock: an offline, OpenAI-compatible mock server, for integration CI.
# Build: docker build -t foxmock .   (or --build-arg BASE_IMAGE=... for a locally made base)
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY foxmock ./foxmock
COPY scenarios ./scenarios
# A self-contained virtualenv without pip: the final stage copies just this folder.
RUN python3 -m venv /opt/foxmock \
    && /opt/foxmock/bin/pip install --no-cache-dir --disable-pip-version-check '.[redis]' \
    && /opt/foxmock/bin/pip uninstall --yes pip setuptools \
    && /opt/foxmock/bin/python -m compileall -q /opt/foxmock

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="foxmock" \
      org.opencontainers.image.description="Offline, OpenAI-compatible mock of the Foxora chat API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin foxmock
COPY --from=build /opt/foxmock /opt/foxmock
COPY scenarios /scenarios
ENV PATH=/opt/foxmock/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FOXMOCK_HOST=0.0.0.0 \
    FOXMOCK_PORT=8080 \
    FOXMOCK_SCENARIOS=/scenarios \
    FOXMOCK_READY_FILE=/tmp/foxmock-ready
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 CMD ["foxmock", "healthcheck"]
ENTRYPOINT ["foxmock"]
CMD ["serve"]
