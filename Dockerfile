# portal-ai-api: multi-stage build on the current Node LTS (26); the runtime image has production
# dependencies only and runs as the unprivileged `node` user.
ARG NODE_IMAGE=node:26-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund
COPY . .
RUN npm run build

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
# MALLOC_ARENA_MAX: glibc's allocator keeps a heap per thread (libvips, the worker threads) and holds on to freed
# image buffers there; two arenas took 20 concurrent 10 MB background removals from +380 to +320 MB RSS.
# METRICS_HOST: the Prometheus listener (METRICS_PORT, 9464) answers on the container's own network; it is not
# EXPOSEd: let only the monitoring network reach it, never publish it.
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    HOST=0.0.0.0 \
    PORT=3000 \
    METRICS_HOST=0.0.0.0 \
    DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# The CLI as `portal-ai-api` (docker exec … portal-ai-api keys create …).
RUN chmod +x dist/cli.js && ln -s /app/dist/cli.js /usr/local/bin/portal-ai-api \
 && mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/server.js"]
