# Learning Buddy Pay: one small image. deploy/entrypoint.sh prepares the volume and the secret files
# as root, migrates the database on the volume, then runs the command as uid 10001.

# htmx for the console comes from the npm registry at the version package-lock.json pins (no CDN).
FROM node:20-bookworm-slim AS static
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && mkdir vendor && cp node_modules/htmx.org/dist/htmx.min.js vendor/

# The base is pinned by digest (python:3.11-slim-bookworm): a rebuild starts from the same bytes
# until this line is changed on purpose.
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LBPAY_INSTANCE_PATH=/data \
    LBPAY_DATABASE_URL=sqlite:////data/lbpay.db \
    LBPAY_PROXY_HOPS=1 \
    LBPAY_SECRETS_FROM=/run/secrets \
    LBPAY_SECRETS_DIR=/run/lbpay-secrets \
    LBPAY_RUN_UID=10001 \
    LBPAY_RUN_GID=10001

WORKDIR /app
# Dependencies first, in their own layer, exactly as locked (versions and hashes): changing the
# code does not reinstall them, and a rebuild does not pick up whatever was released since.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# The code: the whole context as .dockerignore filters it; pyproject.toml alone says which modules
# and packages make up the app, so a new module needs no line here.
COPY . .
RUN pip install --no-deps --no-build-isolation . \
 && chmod 0755 deploy/entrypoint.sh \
 && groupadd --system --gid 10001 lbpay \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin lbpay \
 && mkdir -p /data && chown lbpay:lbpay /data \
 && install -d -m 0700 -o lbpay -g lbpay /run/lbpay-secrets
COPY --from=static /build/vendor ./static/vendor

EXPOSE 8080
# Fly's health check and Caddy talk to /healthz; the process itself needs no curl.
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# (/run/lbpay-secrets exists already so that `docker run --user 10001` works too, without the root part.)
# Root only until the entrypoint has owned the volume and copied the secrets; it then drops to
# uid 10001 (setpriv) and execs the command, so gunicorn receives the stop signal itself.
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
# Threads serve the polling extension cheaply; two workers survive one being recycled; HUP reloads keys.
CMD ["gunicorn", "app:create_app()", "--bind", "0.0.0.0:8080", "--workers", "2", "--threads", "8", "--timeout", "30", "--graceful-timeout", "20"]
