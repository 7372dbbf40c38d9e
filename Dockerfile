# One SyncTV node. Single-node by default (SQLite in /data); set SYNCTV__DATABASE__URL,
# SYNCTV__REDIS__URL and SYNCTV__SERVER__SECRET_KEY for cluster mode.

# hls.js, the browser's only dependency, from the npm registry at the locked version; the
# node serves its dist/ as /static/vendor/hls.js/ (node_modules is not in the build context).
FROM node:20-slim AS web
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SYNCTV__DATABASE__URL=sqlite:////data/synctv.sqlite3
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
COPY --from=web /web/node_modules/hls.js/dist node_modules/hls.js/dist
# A fixed uid, so that Kubernetes can check runAsNonRoot (deploy/k8s/nodes.yaml runAsUser).
RUN mkdir -p /data && useradd --system --uid 10001 --home /app synctv && chown synctv /data
USER synctv
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health')"
CMD ["sh", "-c", "python manage.py migrate --no-input -v 0 && exec python manage.py serve"]
