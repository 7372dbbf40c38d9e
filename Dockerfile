# One SyncTV node. Single-node by default (SQLite in /data); set SYNCTV__DATABASE__URL,
# SYNCTV__REDIS__URL and SYNCTV__SERVER__SECRET_KEY for cluster mode.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SYNCTV__DATABASE__URL=sqlite:////data/synctv.sqlite3
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN mkdir -p /data && useradd --system --home /app synctv && chown synctv /data
USER synctv
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health')"
CMD ["sh", "-c", "python manage.py migrate --no-input -v 0 && exec python manage.py serve"]
