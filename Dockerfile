# syntax=docker/dockerfile:1
# dockersandbox-operator image.
#   docker build -t dockersandbox-operator:dev .
# Base images are pinned by exact tag. Pin them by digest too for reproducible releases
# (`docker buildx imagetools inspect rust:1.95-bookworm` prints it), e.g.
#   --build-arg RUST_IMAGE=rust:1.95-bookworm@sha256:<digest>
# The builder is Debian bookworm, like the runtime (distroless debian12), so the binary's glibc matches.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only what the build needs (see .dockerignore). Cache mounts keep the crate registry's index, downloaded
# crates and compiled dependencies between builds.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -m 0755 target/release/dockersandbox-operator /dockersandbox-operator

# distroless cc: glibc, libgcc, CA certificates, /etc/passwd with nonroot (65532); no shell, no package manager.
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="dockersandbox-operator" \
      org.opencontainers.image.description="Kubernetes operator for isolated Docker engines (DockerSandbox)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /dockersandbox-operator /dockersandbox-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/dockersandbox-operator"]
CMD ["run"]
