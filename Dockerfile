# The mows image for deploy/kubernetes: built from this source tree, on Debian 12.
#   docker build -t mows:0.1.0 .
# The build stage makes the Debian package (make deb: hardened flags, Depends from
# dpkg-shlibdeps); the image installs that package, so it holds exactly what the .deb holds
# (mows-fuse, mowsctl, mows-crc32, man pages) plus fuse3 and the RDMA providers.
FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config dpkg-dev libfuse3-dev libisal-dev libinih-dev \
      libibverbs-dev librdmacm-dev libssl-dev libmicrohttpd-dev libsystemd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make deb && cp build/deb/mows_*.deb /mows.deb

FROM debian:12-slim
COPY --from=build /mows.deb /tmp/mows.deb
# ibverbs-providers: the user-space drivers RDMA devices need (mlx5, rxe, efa, ...).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      /tmp/mows.deb ibverbs-providers \
 && rm -rf /var/lib/apt/lists/* /tmp/mows.deb \
 && mows-fuse --check-config --max-memory=64M >/dev/null
# The DaemonSet gives the command line; this is the same daemon with its help.
ENTRYPOINT ["mows-fuse"]
CMD ["--help"]
