# syntax=docker/dockerfile:1
# One image for every stage: `geostream <ingest|process|sink|api|...>`.
#
#   docker build -t geostream .
#   docker compose up          (see docker-compose.yml)
#
# Stage 1 builds the binary (rdkafka builds librdkafka with cmake and links the system OpenSSL
# and libcurl), stage 2 the map dashboard, stage 3 is the small runtime image: Debian slim with
# only the shared libraries the binary links, running as an unprivileged user.

FROM rust:1.91-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev libzstd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target directory between builds of the same machine.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p geostream \
 && install -D -m 0755 target/release/geostream /out/geostream

FROM node:22-bookworm-slim AS dashboard
WORKDIR /src
COPY . .
RUN scripts/dashboard.sh && mkdir -p /out && cp -r web/dist /out/dashboard

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libcurl4 zlib1g libzstd1 tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 geostream \
 && useradd --system --uid 65532 --gid geostream --home-dir /var/lib/geostream --shell /usr/sbin/nologin geostream \
 && install -d -o geostream -g geostream -m 0750 /var/lib/geostream
COPY --from=build /out/geostream /usr/local/bin/geostream
COPY --from=dashboard /out/dashboard /usr/share/geostream/dashboard
COPY feeds /usr/share/geostream/feeds
ENV GEOSTREAM_DATA_DIR=/var/lib/geostream \
    GEOSTREAM_TELEMETRY__LISTEN=0.0.0.0:9464 \
    GEOSTREAM_API__DASHBOARD_DIR=/usr/share/geostream/dashboard
# The stage's persistent volume: spool, checkpoints, archive.
VOLUME ["/var/lib/geostream"]
USER 65532:65532
WORKDIR /var/lib/geostream
# 8080 api, 8088 ingest HTTP push, 9464 metrics and health.
EXPOSE 8080 8088 9464
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/geostream"]
CMD ["--help"]
