# usermgmt: the gRPC user-management service, as a small non-root image.
#
#   docker build -t usermgmt .
#   docker run -p 50051:50051 -v usermgmt-data:/data usermgmt
#
# The build needs no protoc: build.rs compiles proto/ with protox (pure Rust).

############################
# Build stage
############################
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src

# 1. Dependencies only, so that they are cached in their own layer and rebuilt only when
#    a manifest or the lock file changes. The crate sources are placeholders here.
COPY Cargo.toml Cargo.lock ./
COPY migrations/Cargo.toml migrations/Cargo.toml
RUN mkdir -p src migrations/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs migrations/src/lib.rs \
    && echo 'fn main() {}' > build.rs \
    && cargo build --release --locked --bin usermgmt \
    && rm -rf src migrations/src build.rs

# 2. The real sources. `touch` makes sure cargo sees them as newer than the placeholders
#    it has just built, whatever times COPY gave them.
COPY build.rs build.rs
COPY proto proto
# The email templates are compiled into the binary (include_str!).
COPY templates templates
COPY migrations/src migrations/src
COPY src src
RUN touch build.rs && find src migrations/src templates -type f -exec touch {} + \
    && cargo build --release --locked --bin usermgmt \
    && cp target/release/usermgmt /usr/local/bin/usermgmt

############################
# Runtime stage
############################
FROM debian:bookworm-slim

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, numeric non-root user, so that orchestrators can check runAsNonRoot.
RUN groupadd --system --gid 10001 usermgmt \
    && useradd --system --uid 10001 --gid usermgmt --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin usermgmt \
    && mkdir -p /data/mail \
    && chown -R usermgmt:usermgmt /data

COPY --from=builder /usr/local/bin/usermgmt /usr/local/bin/usermgmt

ENV USERMGMT_DATABASE_URL="sqlite:///data/usermgmt.db?mode=rwc" \
    USERMGMT_LISTEN_ADDR="0.0.0.0:50051" \
    USERMGMT_MAIL_DIR="/data/mail"

# The SQLite database and the .eml files (when no SMTP URL is set) live here.
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001

EXPOSE 50051

# `usermgmt healthcheck` calls grpc.health.v1.Health/Check on 127.0.0.1 at the port of
# USERMGMT_LISTEN_ADDR and exits 0 only when the server answers SERVING.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["usermgmt", "healthcheck"]

ENTRYPOINT ["usermgmt"]
CMD ["serve"]
