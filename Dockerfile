# Learning Buddy Pay: one small image, run as a non-root user; the SQLite file lives on a mounted volume.
# htmx for the console comes from the npm registry at the version package-lock.json pins (no CDN).
FROM node:20-slim AS static
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && mkdir vendor && cp node_modules/htmx.org/dist/htmx.min.js vendor/

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LBPAY_INSTANCE_PATH=/data \
    LBPAY_DATABASE_URL=sqlite:////data/lbpay.db \
    LBPAY_PROXY_HOPS=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY app.py models.py ./
COPY billing ./billing
COPY licensing ./licensing
COPY migrations ./migrations
COPY web ./web
COPY wechatpay ./wechatpay
COPY templates ./templates
COPY static ./static
COPY --from=static /build/vendor ./static/vendor
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin lbpay \
 && mkdir -p /data && chown lbpay:lbpay /data

USER lbpay
EXPOSE 8080
# Fly's health check and Caddy talk to /healthz; the process itself needs no curl.
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# Threads serve the polling extension cheaply; two workers survive one being recycled; HUP reloads keys.
CMD ["gunicorn", "app:create_app()", "--bind", "0.0.0.0:8080", "--workers", "2", "--threads", "8", "--timeout", "30", "--graceful-timeout", "20"]
