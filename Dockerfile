# lb-proxy container image: a release build on Debian, run as a non-root user.
#   docker build -t lb-proxy .
#   docker run --rm -p 8080:8080 -v $PWD/examples:/etc/lb-proxy:ro lb-proxy -c /etc/lb-proxy/lb.toml
# Stop with `docker stop` (SIGTERM: graceful, within server.grace_period; give docker a
# longer --time than that). Logs go to stderr (docker logs); log_format = "json" suits
# log shippers.

FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p lb-proxy \
    && install -m 0755 target/release/lb-proxy /usr/local/bin/lb-proxy

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin lb-proxy
COPY --from=build /usr/local/bin/lb-proxy /usr/local/bin/lb-proxy
USER lb-proxy
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/lb-proxy"]
CMD ["-c", "/etc/lb-proxy/lb.toml"]
