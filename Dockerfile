# auditfwd: Linux audit logs of KVM/libvirt hypervisors to Elastic Common Schema.
#
# The container reads the host's /var/log/audit (mounted read-only) as an unprivileged user whose
# only extra right is membership of the group that may read the audit logs (auditd.conf
# log_group), and keeps its checkpoint in a volume.  See "Running the forwarder" in README.md.
#
# Two stages: the full Python image (it has a C compiler) builds the project's wheel with its
# per-line core compiled by mypyc (setup.py); the slim image installs that wheel.  Both stages
# use the same Debian release, whose C library the compiled modules are linked against.

FROM python:3.11-trixie AS builder

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY forwarder ./forwarder
# A compiled build or none: the image must not fall back to the slower pure Python silently.
RUN AUDITFWD_REQUIRE_COMPILED=1 pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The service user and the state directory it owns (a volume).  The audit logs are read through
# the log group's id given with `docker run --group-add`, not through any capability.
RUN groupadd --system --gid 10001 auditfwd \
    && useradd --system --uid 10001 --gid auditfwd --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin auditfwd \
    && install --directory --owner=auditfwd --group=auditfwd --mode=0700 /var/lib/auditfwd

COPY --from=builder /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/auditfwd-*.whl && rm -rf /tmp/wheels

USER 10001:10001
VOLUME ["/var/lib/auditfwd"]

# Metrics and health on loopback inside the container; the health check runs there too.
ENV AUDITFWD_INPUT=/var/log/audit/audit.log \
    AUDITFWD_STATE_DIR=/var/lib/auditfwd \
    AUDITFWD_METRICS_LISTEN=127.0.0.1:9478 \
    AUDITFWD_LOG_FORMAT=json

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9478/healthz', timeout=4).status == 200 else 1)"]

# SIGTERM: stop reading, deliver what was read, write the checkpoint, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["auditfwd", "run"]
