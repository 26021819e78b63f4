# eemwatchd container. Build: docker build -t eemwatchd .
# Run one reconcile pass:  docker run --rm -v /etc/eemwatchd:/etc/eemwatchd:ro -v eemwatchd-state:/var/lib/eemwatchd \
#                            eemwatchd apply -c /etc/eemwatchd/eemwatchd.yaml --yes
# Try the lab:             docker run --rm -it eemwatchd lab
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY eemwatchd ./eemwatchd
RUN python -m pip install --no-cache-dir --upgrade pip \
 && python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# ca-certificates: the system trust store (policy.trust_store: system) used to verify SMTP chains.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/eemwatchd --create-home --shell /usr/sbin/nologin eemwatchd
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER eemwatchd
WORKDIR /var/lib/eemwatchd
VOLUME ["/var/lib/eemwatchd"]
ENTRYPOINT ["eemwatchd"]
CMD ["lab"]
