# Longshore: build with dev dependencies, run with production ones only.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    LONGSHORE_LISTEN=0.0.0.0:5000 \
    LONGSHORE_STORAGE__PATH=/data
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY config ./config
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 5000
# No curl in slim images: node itself asks /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:5000/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Mount your own file over /app/config/default.yaml, or set LONGSHORE_* variables.
ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve", "--config", "config/default.yaml"]
