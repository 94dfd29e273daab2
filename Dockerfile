# Builds the package and runs its tests against the kernel of the Docker host.
# The tests make network namespaces and talk to ctnetlink, so the container needs
# CAP_SYS_ADMIN and CAP_NET_ADMIN:
#   docker build -t conntrack .
#   docker run --rm --privileged conntrack
#   (or: docker run --rm --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined conntrack)
FROM node:20-bookworm

COPY scripts/system-deps.sh /tmp/system-deps.sh
RUN bash /tmp/system-deps.sh && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY package.json package-lock.json ./
COPY binding.gyp ./
COPY native ./native
COPY tsconfig.json tsconfig.build.json jest.config.js ./
COPY lib ./lib
# npm ci runs the package's own install step (scripts/install.js) and prepare (tsc).
COPY scripts ./scripts
RUN npm ci
COPY . .

CMD ["npm", "test"]
