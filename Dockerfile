# Longshore: build with dev dependencies, run with production ones only.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim AS runtime
# Defaults live in the config file below, not in LONGSHORE_* variables: variables override the
# file, so baked-in ones would silently beat a mounted config's listen and storage.path.
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY config ./config
COPY config/container.yaml /etc/longshore/config.yaml
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 5000
# Reads the same config as the server, so it follows a mounted file's port and TLS.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["node", "dist/cli/healthcheck.js", "/etc/longshore/config.yaml"]
# Mount your own file over /etc/longshore/config.yaml, or set LONGSHORE_* variables.
# Run through its shebang, which carries the node flags Longshore ships with (src/main.ts).
ENTRYPOINT ["./dist/main.js"]
CMD ["serve", "--config", "/etc/longshore/config.yaml"]
