# Airlock: one proxy process (gateway, explicit proxy, transparent sidecar, admin API).
#   docker build -t airlock:local .
#   docker run --rm -p 127.0.0.1:8787:8787 -e AIRLOCK_ADMIN_TOKEN=... airlock:local
FROM python:3.12-slim-bookworm

# iptables: used only by the init container of the sidecar pattern (`airlock sidecar rules --apply`);
# ca-certificates: the system bundle `airlock env` combines with Airlock's CA.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Non-root runtime user. Its uid is what `airlock sidecar rules --proxy-uid` exempts.
ARG AIRLOCK_UID=10001
RUN groupadd --system --gid ${AIRLOCK_UID} airlock \
 && useradd --system --uid ${AIRLOCK_UID} --gid airlock --home-dir /var/lib/airlock --create-home airlock

WORKDIR /opt/airlock
# dependencies first (cached while only the code changes)
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY addons ./addons
COPY schema ./schema
COPY policies ./policies
COPY deploy/airlock-standalone.yaml ./deploy/
RUN pip install --no-cache-dir -e . \
 && mkdir -p /etc/airlock \
 && cp -r policies /etc/airlock/policies \
 && cp deploy/airlock-standalone.yaml /etc/airlock/airlock.yaml

# data_dir (CA, WAL, chDB when no ClickHouse server is configured) lives in the volume
ENV HOME=/var/lib/airlock \
    PYTHONUNBUFFERED=1 \
    AIRLOCK_ADMIN_URL=http://127.0.0.1:8788
VOLUME ["/var/lib/airlock"]
USER airlock
WORKDIR /var/lib/airlock

# gateway, explicit proxy, transparent sidecar, admin
EXPOSE 8787 8080 8082 8788

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys,urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8788/healthz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["airlock"]
CMD ["run", "-c", "/etc/airlock/airlock.yaml"]
