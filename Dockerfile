# syntax=docker/dockerfile:1
# One image, three programs: `acr-pull-webhook serve`, `acr-pull-webhook sync-secrets` and
# `certs-gen` (the Helm chart sets each container's command). Built on Node 24, run on distroless
# Node 24 as uid 65532 with only the bundled JavaScript (tools/image/bundle.ts: our code and the
# production dependencies in one set of ES modules, with their licenses): no node_modules, no shell,
# no package manager, no compiler, no sources.
#
#   docker build -t acr-pull-webhook:dev --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#
# test/integration/image-content.test.ts assembles exactly what the runtime stage copies and runs each
# entry point from it, so the file list below is tested without a Docker engine.

ARG NODE_BUILD_IMAGE=node:24-bookworm-slim
ARG NODE_RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

# --- build: type-check (tsc), then bundle src/ and certs-gen/ with their dependencies -------------
FROM ${NODE_BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: nothing here needs an install script (the `node` devDependency's script would
# only download a second Node; esbuild's only checks its binary, which its platform package holds).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
COPY certs-gen/ certs-gen/
COPY tools/image/bundle.ts tools/image/bundle.ts
RUN npm run build
# A bundle because loading the API client from node_modules (~1,400 modules) took most of a second of
# every `sync-secrets --once` run; bundled it loads in a third of that (docs/image.md).
RUN npm run bundle

# --- runtime ------------------------------------------------------------------------------------
FROM ${NODE_RUNTIME_IMAGE}
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
# Continuation lines keep their leading whitespace: the description's continue in column 1 so no space is added.
LABEL org.opencontainers.image.title="acr-pull-webhook" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that adds Azure Container \
Registry imagePullSecrets to pods, the job that keeps those pull secrets in opted-in namespaces, and certs-gen \
for its TLS." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/nodejs24-debian12:nonroot"
WORKDIR /app
# The bundle's own layout (dist/src/cli/main.js, dist/certs-gen/cli.js, their chunks, a package.json
# saying "type": "module", THIRD_PARTY_LICENSES.txt) at the paths the chart's commands name.
COPY --from=build --chown=0:0 /src/dist/bundle/ ./dist/
# Owned by root, run as nonroot: the process cannot modify its own code. Numeric, so the kubelet can
# enforce runAsNonRoot without trusting a user name.
USER 65532:65532
ENV NODE_ENV=production
# Under load V8 grows the young generation to 64 MiB semispaces; capping them at 8 MiB took the
# webhook's peak RSS for typical pods from 189 to 119 MiB with no measurable CPU cost (bench/).
ENV NODE_OPTIONS=--max-semi-space-size=8
# Both ports are plain defaults of `serve`; sync-secrets --watch uses 8081 for its health port.
EXPOSE 8443 8080
# distroless runs no shell: exec form only. Default: the webhook's help; the chart always sets the command.
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli/main.js"]
CMD ["--help"]
