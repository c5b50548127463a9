# keygate container image.
#
#   docker build -t keygate .
#   docker run --rm --read-only --tmpfs /tmp -p 127.0.0.1:6380:6379 -p 127.0.0.1:9181:9181 \
#     keygate --upstream REDIS_HOST:6379          (then: redis-cli -p 6380)
#
# Build stage: the same two scripts a developer and CI run (scripts/deps.sh installs the Debian
# packages, scripts/build is the Release build scripts/run uses; tests/deploy/test_dockerfile.py
# checks both, and that the runtime stage installs a package for every library keygate links).
# Runtime stage: debian:12-slim with only keygate's runtime libraries, user 10001, nothing
# written outside /tmp, so it runs with a read-only root filesystem.
# Kubernetes sidecar manifests: deploy/ (kustomize).

FROM debian:12 AS build
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the package list changes.
COPY scripts/deps.sh scripts/deps.sh
RUN ./scripts/deps.sh build
COPY . .
RUN KEYGATE_BUILD_DIR=/src/build-release KEYGATE_JOBS="$(nproc)" ./scripts/build \
 && strip /src/build-release/proxy/keygate

FROM debian:12-slim
# One package per shared library keygate links (ldd: libcrypto/libssl, yaml-cpp, spdlog, fmt,
# prometheus-cpp core, liburing; hiredis and prometheus-cpp pull are not linked), plus the CA
# bundle.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      libfmt9 \
      libprometheus-cpp-core1.0 \
      libspdlog1.10 \
      liburing2 \
      libssl3 \
      libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 keygate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin keygate

COPY --from=build /src/build-release/proxy/keygate /usr/local/bin/keygate
# The example registry and a default config (both replaced by mounts in Kubernetes: the
# config directory by a ConfigMap, the registry by another one at /etc/keygate/registry/).
COPY config/examples/ /etc/keygate/examples/
COPY deploy/docker/keygate.yaml /etc/keygate/config/keygate.yaml

# keygate writes nothing but (at most) temporary files; mount an emptyDir or tmpfs here.
VOLUME ["/tmp"]
WORKDIR /tmp
USER 10001:10001
# 6379 clients, 9180 admin (/healthz, /readyz, /metrics, ...), 9181 /metrics only.
EXPOSE 6379 9180 9181
ENTRYPOINT ["/usr/local/bin/keygate", "--config", "/etc/keygate/config/keygate.yaml"]
