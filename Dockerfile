# keygate container: build with the same dependency script the README's commands use, run as
# a non-root user in a slim image. (Kubernetes manifests, probes and hardening: issue 7.)

FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN ./scripts/deps.sh build \
 && cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DKEYGATE_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target keygate \
 && strip /build/proxy/keygate

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libyaml-cpp0.7 libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home keygate
COPY --from=build /build/proxy/keygate /usr/local/bin/keygate
COPY config/keygate.example.yaml /etc/keygate/keygate.yaml
USER 10001
EXPOSE 6379 9180
ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["--config", "/etc/keygate/keygate.yaml"]
