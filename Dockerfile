# Ferry's container image: the `ferry` binary and the first-party plugin components.
#
#   docker build -t ferry:dev .
#
# Not built in CI (the project's tests run the binary directly); see docs/operations.md.
# deploy/ expects the binary at /opt/ferry/bin/ferry and the plugins at /opt/ferry/plugins,
# which is also where Ferry looks for them by default (plugins/ beside the binary's directory).

FROM docker.io/library/rust:1.95-bookworm AS build
# Plugins are Wasm components; rustup's wasm32-wasip2 target links them as such.
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ferry
# From plugins/, so that its .cargo/config.toml (guest stack size) applies, as with
# `cargo xtask plugins`.
RUN cd plugins \
 && cargo build --release --locked --target wasm32-wasip2 \
      -p label-placement -p default-transform -p deployment-status -p passthrough-status
RUN mkdir -p /out/bin /out/plugins \
 && cp target/release/ferry /out/bin/ferry \
 && for p in label-placement default-transform deployment-status passthrough-status; do \
      cp "plugins/target/wasm32-wasip2/release/$(echo "$p" | tr - _).wasm" "/out/plugins/$p.wasm"; \
    done

# glibc and libgcc, nothing else: no shell, no package manager. Runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /opt/ferry/
USER 65532:65532
ENTRYPOINT ["/opt/ferry/bin/ferry"]
