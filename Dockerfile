# Autarky worker image: `autarky worker` by default; `autarky up` for the process that syncs schedules
# and starts the autopilot. Temporal is reached through TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AUTARKY_LOG_FORMAT=json \
    AUTARKY_DATA_DIR=/data \
    AUTARKY_METRICS_HOST=0.0.0.0

# git keeps self-modification's agent versions; bubblewrap is the sandbox candidates run in.
# Self-modification itself runs on a host worker started from a source checkout, not in this image: the
# image installs no agent tests (every check would fail, saying so), and bubblewrap inside a container
# needs user namespaces and a new /proc that Docker's default seccomp and AppArmor profiles and its masked
# /proc paths deny. A worker built from this image says so in one warning line at start. What might make
# it work is in README.md ("Self-modification in Docker"); untested: no Docker engine was at hand.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git bubblewrap \
    && rm -rf /var/lib/apt/lists/*

# /data is created and owned here so that a fresh named volume mounted on it is writable by the user.
RUN useradd --create-home --uid 10001 autarky \
    && mkdir /data \
    && chown autarky:autarky /data

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when pyproject.toml changes,
# not on every source change. The build backend comes along so that the project installs offline below.
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); print(*p["build-system"]["requires"], *p["project"]["dependencies"], sep="\n")' > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-cache-dir --no-deps --no-build-isolation .

USER autarky
# Prometheus: the Temporal SDK's metrics (AUTARKY_SDK_METRICS_PORT) and Autarky's (AUTARKY_METRICS_PORT).
EXPOSE 9464 9465
CMD ["autarky", "worker"]
