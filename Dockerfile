# Keyway: one image for both daemons.
#
#   docker build -t keyway:0.1.0 .
#   docker run keyway:0.1.0 --version
#   docker run ... keyway:0.1.0                 # keyway listen (the sidecar)
#   docker run ... keyway:0.1.0 gateway         # keyway gateway
#
# docs/deployment.md explains the mounts and variables. test/packaging/dockerfile.ts
# runs this file's build and run steps outside Docker (in a scratch copy of
# the build context), so RUN lines stay to what it knows: `npm ci` and
# `npm run`. BuildKit (the default builder since Docker 23) is needed for the
# npm cache mounts.

# Node 26, the primary runtime (package.json engines: ^24 || ^26). A full
# version, never `latest` or a bare major. For reproducible builds pin
# the digest too (docs/deployment.md, "Image"):
#   docker build --build-arg NODE_IMAGE=node:26.12.1-trixie-slim@sha256:<digest> .
ARG NODE_IMAGE=node:26.12.1-trixie-slim

# ---- build: dev dependencies and the TypeScript compiler; nothing of it ships
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime: compiled JavaScript, production dependencies, no TypeScript
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency runs code at install time. The cache lives
# in a mount, so the layer carries no npm cache to clean.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY config ./config
COPY deploy/docker/healthcheck.mjs ./healthcheck.mjs
# The container's configuration: every path a mount point (see the file).
COPY deploy/docker/keyway.yaml /etc/keyway/keyway.yaml
ENV KEYWAY_CONFIG=/etc/keyway/keyway.yaml

# The node image's unprivileged `node` user, by number so that Kubernetes'
# runAsNonRoot can verify it. Everything above belongs to root: the
# application cannot modify itself, and the image runs with a read-only root
# file system.
USER 1000:1000

# The gateway's tunnel port (the container configuration listens on
# 0.0.0.0:7443) and its metrics port (127.0.0.1:9464 unless
# KEYWAY_GATEWAY_METRICS says otherwise). The sidecar publishes nothing: its
# control endpoint (127.0.0.1:7070) and resources are loopback only.
EXPOSE 7443 9464

# GET /healthz of whichever daemon runs (sidecar 127.0.0.1:7070, gateway
# 127.0.0.1:9464, or what KEYWAY_* says), with node: the slim image has no curl.
# Kubernetes ignores HEALTHCHECK; its probes are in deploy/kubernetes/.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 CMD ["node", "/app/healthcheck.mjs"]

# Node runs as PID 1 without an init: `keyway listen` and `keyway gateway`
# handle SIGTERM and SIGINT themselves (drain, then exit 0), SIGHUP reloads,
# and Keyway starts no child processes, so there are no zombies to reap. Use
# `docker run --init` if you want short commands to die on SIGTERM too
# (docs/deployment.md, "Signals").
ENTRYPOINT ["node", "/app/bin/keyway.js"]
CMD ["listen"]
