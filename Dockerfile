# Images for people who have Docker (the tests and `make cluster-up` build the
# same images without a container engine: hack/imagebuild).
#   docker build --target csi-hub        -t ghcr.io/csi-hub/csi-hub:dev .
#   docker build --target csi-hub-plugin -t ghcr.io/csi-hub/csi-hub-plugin:dev .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/csi-hub ./cmd/csi-hub && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/csi-hub-plugin ./cmd/csi-hub-plugin

# csi-hub needs nothing but its static binary.
FROM gcr.io/distroless/static-debian12 AS csi-hub
COPY --from=build /out/csi-hub /csi-hub
ENTRYPOINT ["/csi-hub"]

# The driver formats, checks, grows and attaches block devices.
FROM debian:bookworm-slim AS csi-hub-plugin
RUN apt-get update && \
    apt-get install -y --no-install-recommends e2fsprogs xfsprogs util-linux mount nvme-cli && \
    rm -rf /var/lib/apt/lists/*
COPY --from=build /out/csi-hub-plugin /csi-hub-plugin
ENTRYPOINT ["/csi-hub-plugin"]
