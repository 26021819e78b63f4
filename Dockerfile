# eemwatchd as a container: the daemon (`eemwatchd run`), configuration and state as volumes, /healthz checked.
#   docker build -t eemwatchd .
#   docker run -d --name eemwatchd -p 9810:9810 -v /etc/eemwatchd:/etc/eemwatchd:ro -v eemwatchd-state:/var/lib/eemwatchd eemwatchd
# The config must listen on all addresses inside the container (metrics: {listen: "0.0.0.0:9810"}).
# Step by step, secrets and how this file was checked: docs/deploy.md.

# python:3.11-slim on a named Debian release, so a rebuild does not move to the next Debian silently.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY eemwatchd ./eemwatchd
# Wheels for eemwatchd and its runtime dependencies only (no [test] extra): the final image needs no compiler.
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Before the RUN that sets its owner and mode: a later WORKDIR leaves it 0755 under buildah (podman build).
WORKDIR /var/lib/eemwatchd
# ca-certificates: the system trust store (policy.trust_store: system) that SMTP chains are verified against.
# A numeric user, so `runAsNonRoot` (Kubernetes) can check it without a passwd lookup.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 eemwatchd \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/eemwatchd --no-create-home \
    --shell /usr/sbin/nologin eemwatchd \
 && install -d -o root -g 10001 -m 0750 /etc/eemwatchd \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/eemwatchd
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER 10001:10001
# /etc/eemwatchd: eemwatchd.yaml and known_hosts (mount read-only); /var/lib/eemwatchd: state.db and its lock.
VOLUME ["/etc/eemwatchd", "/var/lib/eemwatchd"]
# metrics.listen: /metrics, /healthz, /readyz and the status page
EXPOSE 9810
# No curl in the slim image: Python's urllib. Any answer but 200 (or none within 5 s) counts as a failure.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:9810/healthz', timeout=5)"]
# SIGTERM: stop taking work, finish or roll back the router step under way, exit 0 (give it `--stop-timeout 150`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["eemwatchd"]
CMD ["run", "-c", "/etc/eemwatchd/eemwatchd.yaml"]
