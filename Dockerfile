# syntax=docker/dockerfile:1
# The eip-guard image: `eip-guard serve` (the webhook) by default; the node agent and the
# CLI ship in the same image. Build from the repository root:
#   docker build -t eip-guard:0.1.0 .
# Two stages: the first installs the project into a virtualenv, the second copies only that
# virtualenv onto a fresh slim Python (no pip cache, no compiler, no build tools).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/eip-guard
WORKDIR /src
# Dependencies first: this layer is reused while only the code changes.
COPY pyproject.toml README.md ./
COPY app ./app
RUN /opt/eip-guard/bin/pip install --no-compile . \
 && /opt/eip-guard/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/eip-guard/bin/python -m compileall -q /opt/eip-guard/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="eip-guard" \
      org.opencontainers.image.description="Keeps OpenELB Eips out of the can_reach/lo trap" \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode was compiled in the build stage: the root filesystem can be read-only.
ENV PATH=/opt/eip-guard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/eip-guard /opt/eip-guard
# A numeric non-root user, so Kubernetes' runAsNonRoot can verify it (the chart runs 65532).
USER 65532:65532
# The webhook (HTTPS), its probes, and the node agent's probes (on the host network).
EXPOSE 8443 8080 9477
ENTRYPOINT ["eip-guard"]
CMD ["serve", "--help"]
